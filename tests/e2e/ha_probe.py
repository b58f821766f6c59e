"""Talks to a real Home Assistant through its own REST and WebSocket APIs.

Run with the Home Assistant venv's Python (it has aiohttp; the project's venv does not need
it): ``python probe.py <command> <base_url> [args]``; prints one JSON document.

- ``setup URL BROKER_HOST BROKER_PORT``: onboard (owner user, auth code, token) and add the
  MQTT integration through its config flow; prints ``{"token": ..., "refresh_token": ...}``.
- ``entities URL TOKEN UNIQUE_ID_PREFIX``: entity registry rows and states of those entities.
- ``energy URL TOKEN PREFS_JSON``: ``energy/save_prefs`` then ``energy/validate``.
- ``statistics URL TOKEN``: ``recorder/list_statistic_ids`` (sums) and ``recorder/validate_statistics``.
- ``service URL TOKEN DOMAIN SERVICE DATA_JSON``: a service call.
- ``state URL TOKEN ENTITY_ID``: one entity's state over REST (``/api/states/<entity_id>``).
- ``import_statistics URL TOKEN JSON``: ``recorder/import_statistics`` for each
  ``{"metadata": ..., "stats": [...]}`` of the JSON list (scripts/ha_screenshots.py).
"""

from __future__ import annotations

import asyncio
import json
import sys

import aiohttp

CLIENT_ID_PATH = "/"


async def setup(url: str, broker: str, port: int) -> dict[str, object]:
    client_id = url + CLIENT_ID_PATH
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{url}/api/onboarding/users", json={
                "client_id": client_id, "name": "Test", "username": "test", "password": "test-password-1",
                "language": "en"}) as r:
            r.raise_for_status()
            code = (await r.json())["auth_code"]
        async with s.post(f"{url}/auth/token", data={"grant_type": "authorization_code", "code": code,
                                                     "client_id": client_id}) as r:
            r.raise_for_status()
            tokens = await r.json()
            token = tokens["access_token"]
        h = {"Authorization": f"Bearer {token}"}
        # finish onboarding (best effort; until every step is done the frontend shows onboarding)
        for step, body in (("core_config", {}), ("analytics", {}),
                           ("integration", {"client_id": client_id, "redirect_uri": f"{client_id}?auth_callback=1"})):
            async with s.post(f"{url}/api/onboarding/{step}", headers=h, json=body) as r:
                pass
        async with s.post(f"{url}/api/config/config_entries/flow", headers=h,
                          json={"handler": "mqtt", "show_advanced_options": False}) as r:
            r.raise_for_status()
            flow = await r.json()
        if flow.get("type") == "form":
            async with s.post(f"{url}/api/config/config_entries/flow/{flow['flow_id']}", headers=h,
                              json={"broker": broker, "port": port}) as r:
                r.raise_for_status()
                flow = await r.json()
        return {"token": token, "refresh_token": tokens.get("refresh_token"), "flow": flow.get("type"),
                "errors": flow.get("errors")}


async def ws(url: str, token: str, *messages: dict[str, object]) -> list[object]:
    out = []
    async with aiohttp.ClientSession() as s, s.ws_connect(url.replace("http", "ws", 1) + "/api/websocket") as w:
        await w.receive_json()  # auth_required
        await w.send_json({"type": "auth", "access_token": token})
        ok = await w.receive_json()
        if ok.get("type") != "auth_ok":
            raise RuntimeError(f"websocket auth: {ok}")
        for i, m in enumerate(messages, 1):
            await w.send_json({"id": i, **m})
            while True:
                r = await w.receive_json()
                if r.get("id") == i and r.get("type") == "result":
                    if not r.get("success"):
                        raise RuntimeError(f"{m['type']}: {r.get('error')}")
                    out.append(r.get("result"))
                    break
    return out


async def entities(url: str, token: str, prefix: str) -> dict[str, object]:
    registry, states = await ws(url, token, {"type": "config/entity_registry/list"}, {"type": "get_states"})
    rows = [e for e in registry if (e.get("unique_id") or "").startswith(prefix)]
    ids = {e["entity_id"] for e in rows}
    return {"registry": rows, "states": [st for st in states if st["entity_id"] in ids]}


async def energy(url: str, token: str, prefs: dict[str, object]) -> dict[str, object]:
    _, result = await ws(url, token, {"type": "energy/save_prefs", **prefs}, {"type": "energy/validate"})
    return {"validate": result}


async def statistics(url: str, token: str) -> dict[str, object]:
    ids, issues = await ws(url, token, {"type": "recorder/list_statistic_ids", "statistic_type": "sum"},
                           {"type": "recorder/validate_statistics"})
    return {"ids": ids, "issues": issues}


async def service(url: str, token: str, domain: str, name: str, data: dict[str, object]) -> dict[str, object]:
    async with aiohttp.ClientSession() as s, s.post(f"{url}/api/services/{domain}/{name}", json=data,
                                                    headers={"Authorization": f"Bearer {token}"}) as r:
        return {"status": r.status}


async def state(url: str, token: str, entity_id: str) -> dict[str, object]:
    async with aiohttp.ClientSession() as s, s.get(f"{url}/api/states/{entity_id}",
                                                   headers={"Authorization": f"Bearer {token}"}) as r:
        r.raise_for_status()
        return await r.json()


async def import_statistics(url: str, token: str, series: list[dict[str, object]]) -> dict[str, object]:
    await ws(url, token, *({"type": "recorder/import_statistics", **one} for one in series))
    return {"imported": len(series)}


def main() -> None:
    cmd, url, *args = sys.argv[1:]
    if cmd == "setup":
        result = asyncio.run(setup(url, args[0], int(args[1])))
    elif cmd == "entities":
        result = asyncio.run(entities(url, args[0], args[1]))
    elif cmd == "energy":
        result = asyncio.run(energy(url, args[0], json.loads(args[1])))
    elif cmd == "statistics":
        result = asyncio.run(statistics(url, args[0]))
    elif cmd == "service":
        result = asyncio.run(service(url, args[0], args[1], args[2], json.loads(args[3])))
    elif cmd == "state":
        result = asyncio.run(state(url, args[0], args[1]))
    elif cmd == "import_statistics":
        result = asyncio.run(import_statistics(url, args[0], json.loads(args[1])))
    else:
        raise SystemExit(f"unknown command {cmd}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
