from __future__ import annotations

import httpx

from simulator import endpoints
from simulator.recommenders import HttpRecommender, parse_list


def test_builtin_endpoints_serve_plain_text_lists(tiny_world):
    for kind in ("oracle", "popularity", "random"):
        handle = endpoints.serve(tiny_world, kind, port=0)
        try:
            reply = httpx.get(f"{handle.url}/recommend/7", timeout=5)
            assert reply.status_code == 200
            assert reply.headers["content-type"].startswith("text/plain")
            ids = reply.text.split(",")
            assert len(ids) == 20 and all(m in tiny_world.index_of for m in ids)
            if kind == "oracle":
                assert ids == [tiny_world.movie_ids[i] for i in tiny_world.true_top_k(7, 20)]
            assert httpx.get(f"{handle.url}/recommend/99999999", timeout=5).status_code == 200
            bad = httpx.get(f"{handle.url}/recommend/-3", timeout=5)
            assert bad.status_code == 400 and bad.text
        finally:
            handle.stop()


def test_oracle_endpoint_skips_what_the_user_watched(tiny_world):
    top = tiny_world.true_top_k(7, 20)
    seen = {7: {top[0], top[1]}}
    handle = endpoints.serve(tiny_world, "oracle", port=0, seen=lambda u: seen.get(u, ()))
    try:
        ids = httpx.get(f"{handle.url}/recommend/7", timeout=5).text.split(",")
        assert ids[0] == tiny_world.movie_ids[top[2]]
    finally:
        handle.stop()


def test_http_recommender_logs_failures_as_status_0_and_500(tiny_world):
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from simulator.serving import serve_app

    async def broken(request):
        return PlainTextResponse("boom", 500)

    handle = serve_app(Starlette(routes=[Route("/recommend/{uid}", broken)]), port=0)
    try:
        failing = HttpRecommender(handle.url).recommend([1])[0]
        assert (failing.status, failing.movie_ids) == (500, ())
        assert failing.error
    finally:
        handle.stop()
    refused = HttpRecommender(handle.url, timeout_ms=600).recommend([1, 2])
    assert [r.status for r in refused] == [0, 0]
    assert all(r.error.startswith("java.net.") for r in refused)


def test_parse_list_keeps_valid_ids_only():
    assert parse_list("a+1995,b+2001\n") == ("a+1995", "b+2001")
    assert parse_list("a+1995, bad id,,c+") == ("a+1995", "c+")
    assert parse_list("") == ()
