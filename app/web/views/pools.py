"""Concurrency pools: what runs in each and what waits for it, and an operator's form to set
a pool's size and description (app.ops.pools)."""

from django.conf import settings
from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from app.models import Pool
from app.ops import pools
from app.web.access import operator_required
from app.web.forms import PoolForm


def get_pool_or_404(name) -> pools.PoolUse:
    pool = pools.find(name)
    if pool is None:
        raise Http404(f"There is no pool named “{name}”: no loaded pipeline names it and it has no row.")
    return pool


def _ids(name: str) -> str:
    """Each pool's form on the page has ids of its own."""
    return f"id_pool_{name}_%s"


def _page(request, failed: tuple[str, PoolForm] | None = None, status=200):
    """The Pools page; `failed`: the pool whose form was refused, with its errors."""
    rows = []
    for pool in pools.overview():
        if failed is not None and failed[0] == pool.name:
            form = failed[1]
        else:
            form = PoolForm(initial={"size": pool.size, "description": pool.description}, auto_id=_ids(pool.name))
        rows.append((pool, form))
    context = {"rows": rows, "recheck": settings.POOL_RECHECK_SECONDS, "size_min": Pool.SIZE_MIN,
               "size_max": f"{Pool.SIZE_MAX:,}"}
    return render(request, "pools/list.html", context, status=status)


@require_GET
@operator_required
def pool_list(request):
    return _page(request)


@require_POST
@operator_required
def pool_edit(request, name):
    """Set the pool's size and description; a refused value re-renders the page with the
    message (422), and nothing is saved."""
    pool = get_pool_or_404(name)
    instance = Pool.objects.filter(name=pool.name).first() or Pool(name=pool.name)
    form = PoolForm(request.POST, instance=instance, auto_id=_ids(pool.name))
    if not form.is_valid():
        return _page(request, (pool.name, form), status=422)
    size, description = form.cleaned_data["size"], form.cleaned_data["description"]
    if pools.save(pool.name, size, description, request.user):
        messages.success(request, f"Pool {pool.name} has {size} slot{'s' if size != 1 else ''} now: "
                                  "its next steps to start use it.")
    else:
        messages.info(request, f"Pool {pool.name} is unchanged.")
    return redirect("pool_list")
