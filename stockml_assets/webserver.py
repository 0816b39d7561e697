"""Talking to the Dagster webserver that serves this instance (its GraphQL endpoint)."""

import json
import urllib.request


def graphql(url: str, query: str, variables: dict | None = None, timeout: float = 30) -> dict:
    """POST ``query`` (values passed as ``variables``, never pasted in) to ``url``/graphql; the answer's JSON.
    OSError when the webserver does not answer."""
    body = {"query": query, "variables": variables or {}}
    req = urllib.request.Request(f"{url.rstrip('/')}/graphql", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def reload_definitions(url: str) -> None:
    """Ask the webserver to reload every code location (what the UI's "Reload definitions" does)."""
    answer = graphql(url, "mutation { reloadWorkspace { __typename ... on PythonError { message } } }", timeout=120)
    kind = (answer.get("data") or {}).get("reloadWorkspace", {}).get("__typename")
    if kind != "Workspace":
        raise OSError(f"the webserver did not reload: {json.dumps(answer)[:300]}")


def served_partition_key(url: str, asset: str, index: int) -> str | None:
    """The ``index``-th partition key of ``asset`` in the definitions the webserver serves (None past their end)."""
    answer = graphql(url, "query Key($asset: [String!]!, $i: Int!, $j: Int!) { assetNodeOrError(assetKey: {path: $asset}) "
                          "{ ... on AssetNode { partitionKeysByDimension(startIdx: $i, endIdx: $j) { partitionKeys } } } }",
                     {"asset": [asset], "i": index, "j": index + 1})
    node = (answer.get("data") or {}).get("assetNodeOrError") or {}
    keys = [k for dim in node.get("partitionKeysByDimension") or [] for k in dim["partitionKeys"]]
    return keys[0] if keys else None
