"""The JSON API for other systems (django-ninja): main (the API, its errors), urls, auth and
tokens (bearer tokens with scopes and an expiry), parsing (request bodies with limits),
schemas, and one module per area: runs (pipelines and runs), predict."""
