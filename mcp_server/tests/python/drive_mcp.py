"""Drives orchestrator-mcp with the official Python MCP SDK (the `mcp` package from PyPI).

Run by mcp_server/tests/python_client.rs against a real orchestratord; one scenario per call:

    drive_mcp.py stdio      ORCHESTRATOR_MCP_EXE API_URL
    drive_mcp.py read_only  ORCHESTRATOR_MCP_EXE API_URL
    drive_mcp.py size_cap   ORCHESTRATOR_MCP_EXE API_URL
    drive_mcp.py http       MCP_URL
    drive_mcp.py http_auth  MCP_URL ADMIN_TOKEN READ_ONLY_TOKEN

Every check is an `assert`; any failure exits non-zero with a traceback, which fails the Rust test.
"""

import asyncio
import json
import sys
import time

from mcp import Client, StdioServerParameters

READ_TOOLS = {
    "cluster_status",
    "describe_node",
    "explain_pending",
    "get_logs",
    "get_workload",
    "list_events",
    "list_instances",
    "list_nodes",
    "list_workloads",
    "plan_deployment",
    "rollout_status",
}
MUTATING_TOOLS = {
    "apply_manifest",
    "deploy_workload",
    "delete_workload",
    "drain_node",
    "scale_workload",
    "uncordon_node",
    "rollback_workload",
}
DESTRUCTIVE_TOOLS = {
    "apply_manifest",
    "delete_workload",
    "drain_node",
    "scale_workload",
    "rollback_workload",
}


def log(*args):
    print(*args, flush=True)


def text(result):
    return "\n".join(c.text for c in result.content if getattr(c, "text", None) is not None)


async def ok(client, tool, args=None):
    """Calls a tool that must succeed; returns its structured content."""
    result = await client.call_tool(tool, args or {})
    assert not result.is_error, f"{tool}({args}) failed: {text(result)}"
    assert result.structured_content is not None, f"{tool} returned no structured content"
    # The text content is the same JSON, for clients that only read text.
    assert json.loads(text(result)) == result.structured_content
    return result.structured_content


async def fails(client, tool, args, *needles):
    """Calls a tool that must come back as an isError result containing every needle."""
    result = await client.call_tool(tool, args)
    message = text(result)
    assert result.is_error, f"{tool}({args}) should have failed, got: {message[:500]}"
    for needle in needles:
        assert needle in message, f"{tool}({args}): {needle!r} not in error: {message}"
    return message


async def wait_for(client, name, predicate, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        w = await ok(client, "get_workload", {"name": name})
        if predicate(w):
            return w
        assert time.monotonic() < deadline, f"{name}: timed out waiting for {what}: {w['status']}"
        await asyncio.sleep(0.2)


def stdio(exe, api, *flags):
    return Client(StdioServerParameters(command=exe, args=["--server", api, *flags]))


async def check_tool_list(client):
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == READ_TOOLS | MUTATING_TOOLS, sorted(tools)
    for name, t in tools.items():
        assert t.description and len(t.description) > 80, f"{name}: {t.description!r}"
        assert t.input_schema.get("type") == "object", name
        assert t.output_schema and t.output_schema.get("type") == "object", name
        a = t.annotations
        assert a is not None, name
        assert a.read_only_hint is (name in READ_TOOLS), f"{name}: {a}"
        if name in MUTATING_TOOLS:
            assert a.destructive_hint is (name in DESTRUCTIVE_TOOLS), f"{name}: {a}"
    deploy = tools["deploy_workload"].input_schema
    assert {"name", "image"} <= set(deploy["required"]), deploy
    for field in ("replicas", "cpu_millicores", "memory_mb", "ports", "node_selector", "placement"):
        assert field in deploy["properties"], field
    assert deploy["properties"]["name"].get("description"), deploy["properties"]["name"]
    assert deploy.get("additionalProperties") is False
    scale = tools["scale_workload"].input_schema
    assert set(scale["required"]) == {"name", "replicas"}, scale
    assert scale["properties"]["replicas"]["type"] == "integer"
    for destructive in ("delete_workload", "drain_node", "scale_workload"):
        props = tools[destructive].input_schema["properties"]
        assert props["confirm"]["type"] == "boolean", destructive
    for lister in ("list_workloads", "list_nodes", "list_instances", "list_events"):
        props = tools[lister].input_schema["properties"]
        assert {"limit", "continue"} <= set(props), lister
    logs = tools["get_logs"].input_schema["properties"]
    assert {"instance", "tail", "since", "container"} <= set(logs), logs
    assert logs["since"].get("description"), logs["since"]
    out = tools["get_workload"].output_schema
    assert {"status", "replicas", "instances", "events"} <= set(out["properties"]), out
    return tools


async def scenario_stdio(exe, api):
    async with stdio(exe, api) as c:
        await check_tool_list(c)
        log("tool list and schemas: ok")

        # Deploy from fields, then follow it to Running.
        d = await ok(c, "deploy_workload", {"name": "web", "image": "demo/web:1", "replicas": 2,
                                            "cpu_millicores": 200, "memory_mb": 128,
                                            "ports": [{"container_port": 80}]})
        assert d["workload"]["name"] == "web" and d["workload"]["replicas"]["desired"] == 2, d
        w = await wait_for(c, "web", lambda w: w["replicas"]["running"] == 2, "2 running")
        assert w["status"] == "2/2 running", w["status"]
        assert w["spec"]["containers"][0]["memory_mb"] == 128, w["spec"]
        assert len(w["instances"]) == 2 and w["instances_total"] == 2, w
        assert any(e["kind"] == "Scheduled" for e in w["events"]), w["events"]
        await fails(c, "deploy_workload", {"name": "web", "image": "demo/web:1"},
                    "already_exists", "scale_workload")
        log("deploy: ok")

        # Scale up, and down to 0 only with confirm.
        s = await ok(c, "scale_workload", {"name": "web", "replicas": 4})
        assert (s["from"], s["to"]) == (2, 4), s
        await wait_for(c, "web", lambda w: w["replicas"]["running"] == 4, "4 running")
        await fails(c, "scale_workload", {"name": "web", "replicas": 0}, "confirm: true")
        w = await ok(c, "get_workload", {"name": "web"})
        assert w["replicas"]["desired"] == 4, w
        log("scale: ok")

        # Logs: the simulated runtime's containers log their lifecycle.
        instance = w["instances"][0]["id"]
        g = await ok(c, "get_logs", {"instance": instance, "tail": 50})
        assert g["instance"] == instance, g
        assert g["lines"] == ["started: image demo/web:1, its default command"], g
        g = await ok(c, "get_logs", {"instance": instance, "container": "web", "tail": 1})
        assert g["lines"] == ["started: image demo/web:1, its default command"], g
        await fails(c, "get_logs", {"instance": "web-000000000000"}, "not_found",
                    'instance "web-000000000000" not found', "list_instances")
        await fails(c, "get_logs", {"instance": instance, "container": "sidecar"},
                    "its containers: web")
        g = await ok(c, "get_logs", {"instance": instance, "since": "1h", "tail": 5})
        assert g["lines"] == ["started: image demo/web:1, its default command"], g
        # The simulated runtime dates every write: the start line is older than 1s by then.
        await asyncio.sleep(1.2)
        g = await ok(c, "get_logs", {"instance": instance, "since": "1s"})
        assert g["lines"] == [] and g["note"] == "No lines in that span.", g
        await fails(c, "get_logs", {"instance": instance, "since": "10"},
                    "`since` must be a number and a unit")
        await fails(c, "get_logs", {"instance": instance, "since": "1w"}, "`since`", '"1w"')
        log("get_logs: ok (real lines, since; unknown instance and container said clearly)")

        # A template change rolls out; rollout_status follows it; rollback_workload returns.
        await ok(c, "apply_manifest", {"manifest": "name: web\nreplicas: 4\ncontainers:\n"
                 "  - name: web\n    image: demo/web:2\n"
                 "    resources: {cpu_millicores: 100, memory_mb: 128}\n"})
        r = None
        for _ in range(100):
            r = await ok(c, "rollout_status", {"name": "web"})
            if r["status"]["complete"] and r["status"]["revision"] == 2:
                break
            await asyncio.sleep(0.1)
        assert r["status"]["complete"] and r["status"]["revision"] == 2, r
        assert [v["revision"] for v in r["revisions"]] == [1], r
        assert r["revisions"][0]["images"] == ["web=demo/web:1"], r
        await fails(c, "rollback_workload", {"name": "web"}, "confirm: true")
        b = await ok(c, "rollback_workload", {"name": "web", "confirm": True})
        assert (b["from_revision"], b["revision"]) == (2, 3), b
        await fails(c, "rollback_workload", {"name": "web", "to_revision": 9, "confirm": True},
                    "no revision 9", "rollout_status")
        for _ in range(100):
            r = await ok(c, "rollout_status", {"name": "web"})
            if r["status"]["complete"]:
                break
            await asyncio.sleep(0.1)
        assert r["status"]["complete"] and r["status"]["updated"] == 4, r
        w = await ok(c, "get_workload", {"name": "web"})
        assert w["spec"]["containers"][0]["image"] == "demo/web:1", w["spec"]
        log("rollout_status and rollback_workload: ok")

        # Bad arguments and API validation errors come back in-band, with field details.
        msg = await fails(c, "deploy_workload", {"name": "Bad_Name", "image": "", "memory_mb": 0},
                          "validation_failed", "- name:", "containers[0].image", "containers[0].resources.memory_mb")
        assert "Traceback" not in msg
        await fails(c, "scale_workload", {"name": "web"}, "replicas")
        await fails(c, "deploy_workload", {"name": "x", "image": "y", "replica": 3}, "replica")
        await fails(c, "get_workload", {"name": "nope"}, "not_found", "list_workloads")
        log("argument and API errors: ok")

        # A workload that fits nowhere: explain_pending names the scheduler's reason.
        await ok(c, "deploy_workload", {"name": "huge", "image": "demo/big:1", "memory_mb": 100000})
        await wait_for(c, "huge", lambda w: w["replicas"]["pending"] == 1, "1 pending")
        e = await ok(c, "explain_pending", {"name": "huge"})
        assert e["pending"] == 1, e
        assert "insufficient memory" in e["summary"], e["summary"]
        assert any(r["reason"] == "insufficient_memory" for r in e["reasons"]["reasons"]), e
        assert e["reasons"]["summary"].startswith("0/1 nodes fit: 1 insufficient memory"), e
        assert any("100000 MB" in h for h in e["hints"]), e["hints"]
        log("explain_pending:", e["summary"])

        # plan_deployment is a dry run: it says where replicas would go and changes nothing.
        before = await ok(c, "cluster_status")
        p = await ok(c, "plan_deployment", {"workload": {"name": "planned", "image": "demo/p:1", "replicas": 3}})
        assert p["fits"] and p["unplaced"] == 0, p
        assert sum(x["replicas"] for x in p["placements"]) == 3, p
        assert p["placements"][0]["node"] == "node-1", p
        p = await ok(c, "plan_deployment", {"manifest": "name: toobig\nreplicas: 3\ncontainers:\n  - name: m\n    image: demo/x:1\n    resources: {cpu_millicores: 6000, memory_mb: 64}\n"})
        assert not p["fits"] and p["unplaced"] == 1, p
        assert "insufficient cpu" in p["summary"], p["summary"]
        after = await ok(c, "cluster_status")
        assert after["workloads"] == before["workloads"], (before, after)
        names = [w["name"] for w in (await ok(c, "list_workloads"))["workloads"]]
        assert "planned" not in names and "toobig" not in names, names
        log("plan_deployment: ok, nothing changed")

        # Paging: the continue token comes back and walks the list.
        page = await ok(c, "list_workloads", {"limit": 1})
        assert len(page["workloads"]) == 1 and page.get("continue"), page
        assert "continue" in page["note"], page
        page2 = await ok(c, "list_workloads", {"limit": 1, "continue": page["continue"]})
        assert page2["workloads"][0]["name"] != page["workloads"][0]["name"], (page, page2)
        detail = await ok(c, "list_workloads", {"detail": True})
        assert all("definition" in w for w in detail["workloads"]), detail
        assert all("definition" not in w for w in (await ok(c, "list_workloads"))["workloads"])
        ev = await ok(c, "list_events", {"workload": "web", "limit": 5})
        assert 0 < len(ev["events"]) <= 5 and ev["last_seq"], ev
        newer = await ok(c, "list_events", {"after": ev["last_seq"]})
        assert all(x["seq"] > ev["last_seq"] for x in newer["events"]), newer
        inst = await ok(c, "list_instances", {"workload": "web", "limit": 2})
        assert len(inst["instances"]) == 2 and inst.get("continue"), inst
        log("paging: ok")

        # Nodes: list, describe, drain (with confirm), uncordon.
        nodes = await ok(c, "list_nodes")
        assert [n["id"] for n in nodes["nodes"]] == ["node-1"], nodes
        assert nodes["nodes"][0]["memory_mb"]["allocatable"] == 32768, nodes
        dn = await ok(c, "describe_node", {"name": "node-1"})
        assert len(dn["instances"]) == 4, dn
        await fails(c, "drain_node", {"name": "node-1"}, "confirm: true", "4 instance")
        assert not (await ok(c, "describe_node", {"name": "node-1"}))["node"]["cordoned"]
        dr = await ok(c, "drain_node", {"name": "node-1", "confirm": True})
        assert dr["node"]["cordoned"], dr
        e = await ok(c, "explain_pending", {"name": "web"})
        assert any(r["reason"] == "node_unschedulable" for r in e["reasons"]["reasons"]), e
        un = await ok(c, "uncordon_node", {"name": "node-1"})
        assert not un["node"]["cordoned"], un
        await wait_for(c, "web", lambda w: w["replicas"]["running"] == 4, "4 running again", timeout=60)
        log("nodes: ok")

        # apply_manifest: create, re-apply (unchanged), update; an invalid document applies nothing.
        manifest = (
            "name: api\nreplicas: 1\ncontainers:\n  - name: api\n    image: demo/api:1\n"
            "---\n"
            "name: worker\nreplicas: 2\nrestart_policy: OnFailure\ncontainers:\n  - name: w\n    image: demo/w:1\n"
        )
        a = await ok(c, "apply_manifest", {"manifest": manifest})
        assert [(x["name"], x["action"]) for x in a["applied"]] == [("api", "created"), ("worker", "created")], a
        a = await ok(c, "apply_manifest", {"manifest": manifest})
        assert [x["action"] for x in a["applied"]] == ["unchanged", "unchanged"], a
        a = await ok(c, "apply_manifest", {"manifest": manifest.replace("replicas: 2", "replicas: 3")})
        assert [x["action"] for x in a["applied"]] == ["unchanged", "updated"], a
        await fails(c, "apply_manifest", {"manifest": "name: newone\nreplicas: 1\ncontainers:\n  - name: n\n    image: demo/n:1\n---\nname: broken\nreplicas: 1\ncontainers: []\n"},
                    "nothing applied", "broken", "containers")
        await fails(c, "get_workload", {"name": "newone"}, "not_found")
        await fails(c, "apply_manifest", {"manifest": manifest.replace("replicas: 2", "replicas: 0")}, "confirm: true")
        log("apply_manifest: ok")

        # Resources and prompts.
        res = await c.list_resources()
        uris = {str(r.uri) for r in res.resources}
        assert {"orchestrator://cluster", "orchestrator://workloads", "orchestrator://nodes",
                "orchestrator://workloads/web"} <= uris, uris
        templates = await c.list_resource_templates()
        assert {str(t.uri_template) for t in templates.resource_templates} == {
            "orchestrator://workloads/{name}", "orchestrator://nodes/{name}"}, templates
        cluster = json.loads((await c.read_resource("orchestrator://cluster")).contents[0].text)
        assert cluster["nodes"]["total"] == 1 and "summary" in cluster, cluster
        web = json.loads((await c.read_resource("orchestrator://workloads/web")).contents[0].text)
        assert web["name"] == "web" and web["definition"]["name"] == "web", web
        node = json.loads((await c.read_resource("orchestrator://nodes/node-1")).contents[0].text)
        assert node["node"]["id"] == "node-1", node
        prompts = {p.name: p for p in (await c.list_prompts()).prompts}
        assert set(prompts) == {"diagnose_workload", "plan_capacity"}, prompts
        g = await c.get_prompt("diagnose_workload", {"name": "huge"})
        body = g.messages[0].content.text
        assert "huge" in body and "insufficient memory" in body and "explain_pending" in body, body
        g = await c.get_prompt("plan_capacity", {"replicas": "3", "cpu_millicores": "500", "memory_mb": "256"})
        assert "plan_deployment" in g.messages[0].content.text
        log("resources and prompts: ok")

        # Delete needs confirm; without it nothing is deleted.
        await fails(c, "delete_workload", {"name": "web"}, "confirm: true", "4 replica")
        await ok(c, "get_workload", {"name": "web"})
        d = await ok(c, "delete_workload", {"name": "web", "confirm": True})
        assert d["name"] == "web" and d["replicas_stopped"] == 4, d
        await fails(c, "get_workload", {"name": "web"}, "not_found")
        log("delete: ok")


async def scenario_read_only(exe, api):
    async with stdio(exe, api, "--read-only") as c:
        names = {t.name for t in (await c.list_tools()).tools}
        assert names == READ_TOOLS, sorted(names)
        assert "READ-ONLY" in (c.instructions or ""), c.instructions
        for tool, args in [("deploy_workload", {"name": "ro", "image": "demo/x:1"}),
                           ("delete_workload", {"name": "ro", "confirm": True}),
                           ("drain_node", {"name": "node-1", "confirm": True}),
                           ("scale_workload", {"name": "ro", "replicas": 1})]:
            await fails(c, tool, args, "read-only")
        status = await ok(c, "cluster_status")
        assert status["workloads"] == 0, status
        assert not (await ok(c, "list_nodes"))["nodes"][0]["cordoned"]
        plan = await ok(c, "plan_deployment", {"workload": {"name": "ro", "image": "demo/x:1"}})
        assert plan["fits"], plan
        log("read-only: ok")


async def scenario_size_cap(exe, api):
    """With a 4 KiB cap, lists shrink their pages and hand back continue tokens that still walk
    every item exactly once."""
    async with stdio(exe, api, "--max-output-bytes", "4096") as c:
        docs = [
            f"name: svc-{i:02}\nreplicas: 0\nlabels: {{team: t{i}}}\ncontainers:\n"
            f"  - name: main\n    image: demo/svc:{i}\n    env: {{A: '{'x' * 200}'}}\n"
            for i in range(30)
        ]
        await ok(c, "apply_manifest", {"manifest": "---\n".join(docs)})
        seen, token, shortened, calls = [], None, False, 0
        while True:
            args = {"detail": True, "limit": 500}
            if token:
                args["continue"] = token
            result = await c.call_tool("list_workloads", args)
            assert not result.is_error, text(result)
            assert len(text(result).encode()) <= 4096, len(text(result))
            page = result.structured_content
            shortened |= "shortened" in (page.get("note") or "")
            seen += [w["name"] for w in page["workloads"]]
            calls += 1
            token = page.get("continue")
            if not token:
                break
            assert calls < 40, "too many pages"
        assert seen == [f"svc-{i:02}" for i in range(30)], seen
        assert shortened and calls > 1, (shortened, calls)
        log(f"size cap: ok ({calls} pages)")


async def scenario_http(url):
    for mode in ("auto", "legacy"):
        async with Client(url, mode=mode) as c:
            names = {t.name for t in (await c.list_tools()).tools}
            assert names == READ_TOOLS | MUTATING_TOOLS, sorted(names)
            name = f"http-{mode}"
            await ok(c, "deploy_workload", {"name": name, "image": "demo/h:1", "replicas": 2})
            await wait_for(c, name, lambda w: w["replicas"]["running"] == 2, "2 running")
            await fails(c, "delete_workload", {"name": name}, "confirm: true")
            await ok(c, "delete_workload", {"name": name, "confirm": True})
            status = await ok(c, "cluster_status")
            assert status["nodes"]["total"] == 1, status
            body = json.loads((await c.read_resource("orchestrator://cluster")).contents[0].text)
            assert "summary" in body
            log(f"streamable HTTP ({mode}, protocol {c.protocol_version}): ok")


async def scenario_http_auth(url, admin, reader):
    """The daemon's /mcp with API tokens: none is refused; a read-only token reads and its
    changes fail with the API's 403; an admin token changes (named in events, checked by the
    Rust test)."""
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    def connect(token):
        headers = {"Authorization": f"Bearer {token}"} if token else None
        transport = streamable_http_client(url, http_client=create_mcp_http_client(headers=headers))
        return Client(transport, mode="legacy")

    async def no_token():
        async with connect(None) as c:
            await c.list_tools()

    # The endpoint's own answer to a request without a token: 401 with the API's JSON error.
    import urllib.error
    import urllib.request

    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
    request = urllib.request.Request(
        url,
        data=json.dumps(init).encode(),
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
        },
    )
    try:
        urllib.request.urlopen(request, timeout=10)
        raise AssertionError("POST /mcp without a token was answered")
    except urllib.error.HTTPError as e:
        body = e.read().decode()
        assert e.code == 401, (e.code, body)
        assert json.loads(body)["error"]["code"] == "unauthorized", body
    # The SDK surfaces it as an error (its message does not carry the status).
    try:
        await asyncio.wait_for(no_token(), 30)
    except Exception as e:  # possibly wrapped in an exception group
        log("no token: refused,", type(e).__name__)
    else:
        raise AssertionError("an MCP session without a token was accepted")
    async with connect(reader) as c:
        status = await ok(c, "cluster_status")
        assert status["workloads"] == 0, status
        await fails(c, "deploy_workload", {"name": "by-reader", "image": "demo/x:1"}, "read-only")
        log("read-only token: reads, and its changes are refused")
    async with connect(admin) as c:
        await ok(c, "deploy_workload", {"name": "by-mcp", "image": "demo/h:1", "replicas": 1})
        await wait_for(c, "by-mcp", lambda w: w["replicas"]["running"] == 1, "1 running")
        log("admin token: deployed")


def main():
    scenario, *rest = sys.argv[1:]
    scenarios = {
        "stdio": scenario_stdio,
        "read_only": scenario_read_only,
        "size_cap": scenario_size_cap,
        "http": scenario_http,
        "http_auth": scenario_http_auth,
    }
    asyncio.run(scenarios[scenario](*rest))
    log(f"scenario {scenario}: passed")


if __name__ == "__main__":
    main()
