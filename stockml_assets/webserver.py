"""Talking to the Dagster webserver that serves this instance (its GraphQL endpoint)."""

import json
import urllib.request


def graphql(url: str, query: str, variables: dict | None = None, timeout: float = 30) -> dict:
    """POST ``query`` (values passed as ``variables``, never pasted in) to ``url``/graphql; the answer's JSON.
    OSError when the webserver does not answer."""
    body = {"query": query, "variables": variables or {}}
    req = urllib.request.Request(f"{url.rstrip('/')}/graphql", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def reload_definitions(url: str) -> None:
    """Ask the webserver to reload every code location (what the UI's "Reload definitions" does)."""
    answer = graphql(url, "mutation { reloadWorkspace { __typename ... on PythonError { message } } }", timeout=120)
    kind = (answer.get("data") or {}).get("reloadWorkspace", {}).get("__typename")
    if kind != "Workspace":
        raise OSError(f"the webserver did not reload: {json.dumps(answer)[:300]}")


def served_partition_count(url: str, asset: str) -> int | None:
    """How many partitions ``asset`` has in the definitions the webserver serves (None when it is unknown there).

    (``partitionKeysByDimension(startIdx, endIdx)`` does not help: it counts keys from the start without
    stopping at the end.)"""
    answer = graphql(
        url,
        "query Count($asset: [String!]!) { assetNodeOrError(assetKey: {path: $asset}) { ... on AssetNode { partitionStats { numPartitions } } } }",
        {"asset": [asset]},
    )
    node = (answer.get("data") or {}).get("assetNodeOrError") or {}
    return (node.get("partitionStats") or {}).get("numPartitions")


def catch_up_served_partitions(url: str, count: int, asset: str = "drift_report") -> int | None:
    """When the webserver serves fewer than ``count`` partitions of ``asset`` (it loaded the code before the
    feed delivered), ask it to reload; the count it served before, or None when it was up to date."""
    served = served_partition_count(url, asset)
    if served is None or served >= count:
        return None
    reload_definitions(url)
    return served
