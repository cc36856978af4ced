from django.contrib.auth import views as auth_views
from django.shortcuts import redirect
from django.views.decorators.http import require_GET

from app.web.access import any_role, is_operator, public


@require_GET
@any_role
def home(request):
    """Each role lands on its own page: operators on "is anything broken?", everyone else on
    the results."""
    return redirect("dashboard" if is_operator(request.user) else "results")


login = public(auth_views.LoginView.as_view(redirect_authenticated_user=True))
logout = any_role(auth_views.LogoutView.as_view())
