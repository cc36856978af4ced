"""Whether this process's artifact store is the one the database's records point into.

The database names outputs, model files and logs by their path in the artifact store. A
worker on a second machine with a DATA_DIR of its own (or another bucket) would take steps
whose inputs it cannot find and write outputs no other machine sees: runs would fail mid-way,
step after step, far from the cause. So the store has an id: a random string kept both in
the database (StoreMarker, one row) and as the object `store-id` in the store. The first
process to check creates both; a worker checks at start (app.runs.tasks) and, when its store
does not hold the database's id, stops with one line saying what to fix.
"""

from django.db import transaction

from app import artifacts
from app.models import StoreMarker

MARKER_PK = 1


class StoreMismatch(Exception):
    """This process's artifact store is not the database's; the message says what to do."""


def check() -> str:
    """The store's id, created in the database and the store on first use. Raises
    StoreMismatch when the store does not hold the id the database has."""
    with transaction.atomic():
        # One fixed row: a second process creating it at the same moment waits for the
        # first's commit and then reads its id. The object is written before that commit,
        # so whoever reads the row finds the object in a shared store.
        candidate = artifacts.new_store_id()
        marker, created = StoreMarker.objects.get_or_create(
            pk=MARKER_PK, defaults={"store_id": candidate, "where": artifacts.where()[:500]}
        )
        if created:
            artifacts.write_store_id(candidate)
            return candidate
    if artifacts.read_store_id() != marker.store_id:
        raise StoreMismatch(
            f"the artifact store at {artifacts.where()} is not the one this database uses: "
            "with several machines DATA_DIR must be shared, or set ARTIFACTS_URL"
        )
    return marker.store_id
