from django.contrib.auth import views as auth_views
from django.shortcuts import redirect
from django.views.decorators.http import require_GET

from app.access import any_role, is_operator, public


@require_GET
@any_role
def home(request):
    """Each role lands on its own page: operators on the runs, everyone else on pipelines."""
    return redirect("run_list" if is_operator(request.user) else "pipeline_list")


login = public(auth_views.LoginView.as_view(redirect_authenticated_user=True))
logout = any_role(auth_views.LogoutView.as_view())
