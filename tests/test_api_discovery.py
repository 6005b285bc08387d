"""OCI Distribution Spec v1.1: listing tags (end-8a/8b) and the /v2/_catalog extension.

distribution 2.8 returns tags unsorted and ignores ``n``/``last`` on tags/list, so the ordering
and pagination checks only run against Cargohold (the spec wins: "the tags MUST be sorted in
lexical or ASCIIbetical order").
"""

from __future__ import annotations

import uuid

import pytest
import requests
from ocihelpers import (
    assert_error,
    build_image,
    list_tags,
    next_link,
    push,
    push_image,
    request,
    requires_cargohold,
    tags_of,
)

TAGS = ["latest", "v1.0", "v1.0-rc1", "v1.10", "v1.2", "V2", "_internal", "a", "b", "c",
        "0.1", "9"]


def _lexical_orders(tags: list[str]) -> list[list[str]]:
    # "lexical (case-insensitive alphanumeric) or ASCIIbetical order (Go's sort.Strings)"
    return [sorted(tags), sorted(tags, key=lambda t: (t.lower(), t))]


@pytest.fixture
def tagged_repo(registry_url: str, repo: str) -> list[str]:
    image = build_image(registry_url, repo)
    for tag in TAGS:
        push(registry_url, repo, image, tag)
    return TAGS


def _tags(resp: requests.Response, repo: str) -> list[str]:
    assert resp.status_code == 200, (resp.status_code, resp.content[:300])
    body = resp.json()
    assert body["name"] == repo
    assert isinstance(body["tags"], list)
    return body["tags"]


def test_tags_list_contains_every_tag(registry_url: str, repo: str,
                                      tagged_repo: list[str]) -> None:
    resp = list_tags(registry_url, repo)
    assert sorted(_tags(resp, repo)) == sorted(tagged_repo)
    assert "json" in resp.headers.get("Content-Type", "")


@requires_cargohold
def test_tags_list_is_sorted(registry_url: str, repo: str, tagged_repo: list[str]) -> None:
    assert _tags(list_tags(registry_url, repo), repo) in _lexical_orders(tagged_repo)


def test_unknown_repository_is_name_unknown(registry_url: str, repo: str) -> None:
    assert_error(list_tags(registry_url, repo), 404, "NAME_UNKNOWN")


@requires_cargohold
def test_n_limits_and_links_to_the_rest(registry_url: str, repo: str,
                                        tagged_repo: list[str]) -> None:
    # "It returns up to <int> tags ... may return fewer only when the list ends or a Link
    # header is sent ... Link (RFC5988) with rel="next""; conformance: n=numTags/2 gives exactly
    # that many.
    resp = list_tags(registry_url, repo, n=5)
    page = _tags(resp, repo)
    assert len(page) == 5
    order = next(o for o in _lexical_orders(tagged_repo) if o[:5] == page)
    collected = list(page)
    url = next_link(registry_url, resp)
    assert url, "a Link header must announce the remaining tags"
    for _ in range(len(tagged_repo)):  # bounded
        if url is None:
            break
        resp = request("GET", url)
        page = _tags(resp, repo)
        assert 0 < len(page) <= 5
        collected += page
        url = next_link(registry_url, resp)
    assert url is None
    assert collected == order


@requires_cargohold
def test_n_zero_is_empty_without_link(registry_url: str, repo: str,
                                      tagged_repo: list[str]) -> None:
    # "If n=0, the registry must return an empty list and must not include a Link header."
    resp = list_tags(registry_url, repo, n=0)
    assert _tags(resp, repo) == []
    assert "Link" not in resp.headers


@requires_cargohold
def test_n_larger_than_list(registry_url: str, repo: str, tagged_repo: list[str]) -> None:
    resp = list_tags(registry_url, repo, n=1000)
    assert _tags(resp, repo) in _lexical_orders(tagged_repo)
    assert "Link" not in resp.headers


@requires_cargohold
def test_last_is_exclusive(registry_url: str, repo: str, tagged_repo: list[str]) -> None:
    # "<tagname> itself is not included in the results"; conformance: n=numTags/2 and
    # last=<last of the first page> returns <= n tags, none of them <last>.
    first = _tags(list_tags(registry_url, repo, n=6), repo)
    order = next(o for o in _lexical_orders(tagged_repo) if o[:6] == first)
    second = _tags(list_tags(registry_url, repo, n=6, last=first[-1]), repo)
    assert first[-1] not in second
    assert second == order[6:12]


@requires_cargohold
def test_last_without_n(registry_url: str, repo: str, tagged_repo: list[str]) -> None:
    # "When using last, the n parameter is optional" (conformance TestList uses last alone).
    full = _tags(list_tags(registry_url, repo), repo)
    pivot = full[len(full) // 2 - 1]
    rest = _tags(list_tags(registry_url, repo, last=pivot), repo)
    assert rest == full[len(full) // 2:]


@requires_cargohold
def test_last_need_not_be_an_existing_tag(registry_url: str, repo: str) -> None:
    image = build_image(registry_url, repo)
    for tag in ("alpha", "bravo", "charlie", "delta"):
        push(registry_url, repo, image, tag)
    assert _tags(list_tags(registry_url, repo, last="b"), repo) == ["bravo", "charlie", "delta"]
    assert _tags(list_tags(registry_url, repo, last="bz", n=1), repo) == ["charlie"]
    assert _tags(list_tags(registry_url, repo, last="zzz"), repo) == []


@requires_cargohold
def test_empty_repository_lists_no_tags(registry_url: str, repo: str) -> None:
    # A repository whose only manifest was pushed by digest exists but has no tags.
    push_image(registry_url, repo)
    resp = list_tags(registry_url, repo)
    assert _tags(resp, repo) == []


def test_deleted_tags_leave_the_list(registry_url: str, repo: str) -> None:
    push_image(registry_url, repo, "kept")
    gone = push_image(registry_url, repo, "gone")
    assert request("DELETE", f"{registry_url}/v2/{repo}/manifests/{gone.digest}").status_code \
        == 202
    assert tags_of(registry_url, repo) == ["kept"]


# ----------------------------------------------------------------------------- catalog

def _catalog(resp: requests.Response) -> list[str]:
    assert resp.status_code == 200, (resp.status_code, resp.content[:300])
    repos = resp.json()["repositories"]
    assert isinstance(repos, list)
    return repos


@pytest.fixture
def catalog_repos(registry_url: str) -> tuple[str, list[str]]:
    prefix = f"catalog/{uuid.uuid4().hex[:10]}"
    names = [f"{prefix}/{leaf}" for leaf in ("a", "b", "c", "d", "e")]
    for name in reversed(names):
        push_image(registry_url, name, "latest")
    return prefix, names


def test_catalog_lists_repositories_sorted(registry_url: str,
                                           catalog_repos: tuple[str, list[str]]) -> None:
    prefix, names = catalog_repos
    # start right before our names, so other tests' repositories cannot push them off the page
    resp = request("GET", f"{registry_url}/v2/_catalog", params={"last": prefix, "n": 5})
    assert _catalog(resp) == names


def test_catalog_pagination(registry_url: str, catalog_repos: tuple[str, list[str]]) -> None:
    prefix, names = catalog_repos
    resp = request("GET", f"{registry_url}/v2/_catalog", params={"last": prefix, "n": 2})
    assert _catalog(resp) == names[:2]
    url = next_link(registry_url, resp)
    assert url, "a Link header must announce the next page"
    resp = request("GET", url)
    assert _catalog(resp) == names[2:4]
    assert next_link(registry_url, resp)
    # last is exclusive
    resp = request("GET", f"{registry_url}/v2/_catalog", params={"last": names[3], "n": 1})
    assert _catalog(resp) == names[4:5]


def test_catalog_without_parameters_includes_new_repositories(
        registry_url: str, catalog_repos: tuple[str, list[str]]) -> None:
    _, names = catalog_repos
    seen: list[str] = []
    url: str | None = f"{registry_url}/v2/_catalog?n=1000"
    for _ in range(1000):  # bounded
        if url is None:
            break
        resp = request("GET", url)
        seen += _catalog(resp)
        url = next_link(registry_url, resp)
    assert url is None
    assert set(names) <= set(seen)
    assert seen == sorted(seen)


def test_catalog_n_zero(registry_url: str, catalog_repos: tuple[str, list[str]]) -> None:
    resp = request("GET", f"{registry_url}/v2/_catalog", params={"n": 0})
    assert _catalog(resp) == []
    assert "Link" not in resp.headers
