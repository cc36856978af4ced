"""Model fields of our own."""


from django.db import models


class OrderedJSONField(models.JSONField):
    """A JSONField that gives back its keys in the order they were saved, on every back end.

    PostgreSQL's `jsonb` (Django's choice) sorts an object's keys by length and then bytes,
    so a run's parameters, a version's metrics and an audit event's details would come back
    in another order than the pipeline defined or the step logged them. Its `json` type keeps
    the text as written. We never query inside these values, which is what `jsonb` is for;
    SQLite stores both as text anyway.
    """

    def db_type(self, connection):
        if connection.vendor == "postgresql":
            return "json"
        return super().db_type(connection)

    def from_db_value(self, value, expression, connection):
        if connection.vendor == "postgresql" and not isinstance(value, (str, bytes)):
            return value  # psycopg has already decoded `json` (keys in their saved order)
        return super().from_db_value(value, expression, connection)

    def get_db_prep_value(self, value, connection, prepared=False):
        adapted = super().get_db_prep_value(value, connection, prepared)
        if connection.vendor == "postgresql":
            from psycopg.types.json import Json, Jsonb  # psycopg is there only with PostgreSQL

            if isinstance(adapted, Jsonb):  # sent as `json`: `jsonb` would sort the keys
                return Json(adapted.obj, dumps=adapted.dumps)
        return adapted
