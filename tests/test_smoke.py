from app.models import Run


def test_it_shows_pipelines_to_an_operator(operator_client):
    response = operator_client.get("/pipelines/")
    assert response.status_code == 200
    assert b"fanout_demo" in response.content
