from django.contrib.auth.models import Group

from app.web.access import is_operator
from tests.conftest import make_user


def test_it_creates_the_two_roles_in_a_migration(db):
    operators = Group.objects.get(name="operators")
    assert [p.codename for p in operators.permissions.all()] == ["operate"]
    assert not Group.objects.get(name="stakeholders").permissions.exists()


def test_it_treats_operators_and_superusers_as_operators(db):
    assert is_operator(make_user("o", "operators"))
    assert is_operator(make_user("a", superuser=True))
    assert not is_operator(make_user("s", "stakeholders"))
