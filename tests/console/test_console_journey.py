"""The quick-start journey in a real browser: log in and change the password, create an API key
(shown once), deploy a tiny GGUF from the catalog through the form and its compatibility check on
the real llama.cpp engine (the prebuilt runtime), watch it run and read llama.cpp's log, chat with
streaming, compare two models, embed texts (llama.cpp too), delete. The other categories (rerank,
images, speech) run on the fake OpenAI engine. Screenshots of every page are taken on the way
(see docs/console.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from console_helpers import ConsoleServer

pytestmark = pytest.mark.console

NEW_PASSWORD = "a-new-admin-password"


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gpustack_core.testing.gguf_models import TinyLlamaSpec, write_llama_gguf

    return write_llama_gguf(tmp_path_factory.mktemp("models") / "tiny.gguf", TinyLlamaSpec.tiny())


#: Deterministic sampling for the real engine, next to the form's temperature 0 and max tokens 16
#: (the journey never asserts on the text a random-weight model samples).
SAMPLING = {"seed": 42}


def _wait_running(server: ConsoleServer, headers: dict[str, str], name: str) -> None:
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = httpx.get(f"{server.url}/api/v1/instances", params={"deployment": name}, headers=headers)
        items = r.json()["items"]
        if any(i["state"] == "error" for i in items):
            raise AssertionError(f"{name} failed: {items}")
        if items and all(i["state"] == "running" for i in items):
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} did not reach running: {items}")


def _unlabelled(page: Any) -> list[str]:
    """Form controls without a label a screen reader can read."""
    found: list[str] = page.evaluate(
        """() => [...document.querySelectorAll("input:not([type=hidden]), select, textarea")]
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute("aria-label"))
            .map(e => e.id || e.outerHTML)"""
    )
    return found


def test_quick_start_journey(
    browser: Any, console_server: ConsoleServer, tiny_gguf: Path, screenshots: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    server = console_server
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.on("dialog", lambda d: d.accept())
    shot = lambda name: page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)  # noqa: E731

    # -- log in as admin; the generated password must be changed first
    page.goto(server.url + "/deployments")
    assert page.url.startswith(server.url + "/login")
    page.fill("#password", server.admin_password)
    shot("login")
    page.click("button[type=submit]")
    page.wait_for_url("**/account/password?required=1")
    assert "first login" in page.inner_text("main")
    page.goto(server.url + "/")  # every page sends the admin back until the password changed
    page.wait_for_url("**/account/password?required=1")
    page.fill("#current", server.admin_password)
    page.fill("#new", NEW_PASSWORD)
    page.fill("#again", NEW_PASSWORD)
    shot("change-password")
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/")
    server.admin_password = NEW_PASSWORD
    cookies = {c["name"]: c for c in context.cookies()}
    session = cookies["gpustack_session"]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"

    # -- API key: shown once, works, then never shown again
    page.goto(server.url + "/api-keys")
    page.fill("#k-name", "quickstart")
    page.click("#key-form button[type=submit]")
    key = page.inner_text("#the-key pre").strip()
    assert key.startswith("gpsk_")
    shot("api-keys")
    models = httpx.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {key}"})
    assert models.status_code == 200, models.text
    page.reload()
    page.wait_for_selector("text=quickstart")
    assert key not in page.content()

    # -- the catalog, extended with the tiny model from a file, then deploy from it
    catalog_file = tmp_path / "catalog.json"
    entry = {
        "id": "tiny-chat",
        "name": "Tiny chat (test GGUF)",
        "category": "llm",
        "engine": "llama.cpp",
        "model": f"local:{tiny_gguf}",
        "quantizations": [],
        "description": "A random-weight llama GGUF for the browser test.",
    }
    catalog_file.write_text(json.dumps({"entries": [entry]}))
    page.goto(server.url + "/catalog")
    page.set_input_files("#cat-file", str(catalog_file))
    page.click("#cat-apply")
    page.wait_for_selector("text=Tiny chat (test GGUF)")
    assert page.locator("text=Qwen3 0.6B").count() == 1  # the shipped entries stay (extend)
    shot("catalog")
    page.click("a[aria-label='Deploy Tiny chat (test GGUF)']")
    page.wait_for_url("**/deployments/new?catalog=tiny-chat")
    expect(page.locator("#f-name")).to_have_value("tiny-chat")
    expect(page.locator("#f-engine")).to_have_value("llama.cpp")
    page.fill("#f-engine-version", server.llama_cpp_version)  # the prebuilt runtime, not a native build
    page.click("#list-files")
    page.locator("#files-note", has_text="gguf, 1 files").wait_for()
    page.click("#check")
    summary = page.locator("#check-summary")
    summary.filter(has_text="fits on worker worker-a").wait_for()
    page.locator("#check-result li").first.wait_for()  # the estimate's claims, drawn with the summary
    assert page.locator("#check-result li").count() >= 1
    shot("deployment-form")
    assert _unlabelled(page) == []
    page.click("#save")
    page.wait_for_url(server.url + "/deployments")
    page.locator("td", has_text="running").first.wait_for(timeout=60_000)
    shot("deployments")

    # -- the instance: running, its log visible
    page.click("a:text('#0')")
    page.wait_for_url("**/instances/*")
    page.locator("#instance-state", has_text="running").wait_for()
    page.locator("#log", has_text="listening on").wait_for()  # the prebuilt llama.cpp server
    page.locator("#log", has_text="load_model: loading model").wait_for()  # llama.cpp's own log lines
    # the stored timeline, opened after the fact: every state from creation on, with reasons
    page.locator("#timeline li[data-state='running']").wait_for()
    timeline = page.locator("#timeline li")
    states = [timeline.nth(n).get_attribute("data-state") for n in range(timeline.count())]
    assert states[0] == "pending", states
    assert states[-1] == "running", states
    assert states.index("scheduled") < states.index("running"), states
    assert "placed on" in page.locator("#timeline li[data-state='scheduled']").inner_text()
    assert "waiting to be scheduled" in timeline.first.inner_text()
    shot("instance")

    # -- two more deployments through the public API: a second chat model and an embedding model
    admin = server.api_login()
    others = {
        "tiny-chat-b": "llm",
        "tiny-embed": "embedding",
        "tiny-rerank": "rerank",
        "tiny-image": "image",
        "tiny-tts": "text_to_speech",
        "tiny-stt": "speech_to_text",
    }
    real = {"tiny-chat-b", "tiny-embed"}  # on llama.cpp; the rest on the fake OpenAI engine
    for name, category in others.items():
        engine = {"engine": "llama.cpp", "engine_version": server.llama_cpp_version} if name in real else {}
        if name == "tiny-embed":  # the tiny GGUF names no pooling type: mean, for OpenAI embeddings
            engine["extra_args"] = ["--pooling", "mean"]
        body = {"name": name, "model": f"local:{tiny_gguf}", "engine": "fake-openai", "category": category}
        body.update(engine)
        r = httpx.post(f"{server.url}/api/v1/deployments", json=body, headers=admin)
        assert r.status_code == 201, r.text
    for name in others:
        _wait_running(server, admin, name)

    # -- playground chat streams tokens
    page.goto(server.url + "/playground")
    page.locator("#chat-models option[value='tiny-chat-b']").wait_for(state="attached")
    page.select_option("#chat-models", ["tiny-chat"])
    page.fill("#chat-temperature", "0")
    page.fill("#chat-max-tokens", "16")
    page.fill("#chat-extra", json.dumps(SAMPLING | {"ignore_eos": True}))  # all 16 tokens, no early stop
    page.fill("#chat-system", "You are terse.")
    page.fill("#chat-input", "Say hello")
    with page.expect_response("**/v1/chat/completions") as streamed:
        page.click("#chat-send")
    assert streamed.value.headers["content-type"].startswith("text/event-stream")
    answer = page.locator("article[data-model='tiny-chat'] .answer")
    page.locator("article[data-model='tiny-chat'] .stats[data-done]").wait_for()
    stats = page.inner_text("article[data-model='tiny-chat'] .stats")
    assert "TTFT" in stats
    assert "16 completion tokens" in stats
    assert "tokens/s" in stats
    assert answer.inner_text().strip()  # whatever the random weights sampled; never its content

    # -- compare two models on one prompt
    page.select_option("#chat-models", ["tiny-chat", "tiny-chat-b"])
    page.fill("#chat-extra", json.dumps(SAMPLING))
    page.click("#chat-clear")
    page.fill("#chat-input", "Compare")
    page.click("#chat-send")
    for model in ("tiny-chat", "tiny-chat-b"):
        page.locator(f"article[data-model='{model}'] .stats[data-done]").wait_for()
        assert "tokens/s" in page.inner_text(f"article[data-model='{model}'] .stats")
    shot("playground-chat")

    # -- view code: real base URL and model
    page.click("#panel-chat .view-code")
    code = page.inner_text("#code-body")
    assert f"{server.url}/v1/chat/completions" in code
    assert '"model": "tiny-chat"' in code
    page.click("#code-dialog [data-lang='python']")
    assert f'base_url="{server.url}/v1"' in page.inner_text("#code-body")
    page.click("#code-dialog form button")

    # -- embeddings: one point per text and the similarity matrix
    page.click("#tab-embeddings")
    page.locator("#emb-model option[value='tiny-embed']").wait_for(state="attached")
    page.fill("#emb-texts", "a cat\na dog\na car")
    page.click("#emb-form button[type=submit]")
    page.locator("#emb-plot svg").wait_for()
    assert page.locator("#emb-plot svg g.point").count() == 3
    assert page.locator("#cosine tbody tr").count() == 3
    assert page.inner_text("#cosine tbody tr:first-child td:nth-child(2)") == "1.000"
    shot("playground-embeddings")

    # -- rerank, images, text to speech, speech to text
    page.click("#tab-rerank")
    page.locator("#rr-model option[value='tiny-rerank']").wait_for(state="attached")
    page.fill("#rr-query", "pets")
    page.fill("#rr-docs", "a cat\na dog\na car")
    page.click("#rr-form button[type=submit]")
    page.locator("#rr-result tbody tr").first.wait_for()
    assert page.locator("#rr-result tbody tr").count() == 3
    assert page.inner_text("#rr-result tbody tr:first-child").split("\t")[:3] == ["1", "1.0000", "a cat"]
    page.click("#tab-images")
    page.locator("#img-model option[value='tiny-image']").wait_for(state="attached")
    page.fill("#img-prompt", "a lighthouse")
    page.click("#img-form button[type=submit]")
    assert page.locator("#img-result img").get_attribute("src").startswith("data:image/png;base64,")
    page.click("#tab-speech")
    page.locator("#tts-model option[value='tiny-tts']").wait_for(state="attached")
    page.fill("#tts-input", "hello")
    page.click("#tts-form button[type=submit]")
    assert page.locator("#tts-result audio").get_attribute("src").startswith("blob:")
    page.click("#tab-transcription")
    page.locator("#stt-model option[value='tiny-stt']").wait_for(state="attached")
    audio = tmp_path / "hello.wav"
    audio.write_bytes(b"RIFF" + bytes(2000))
    page.set_input_files("#stt-file", str(audio))
    page.click("#stt-form button[type=submit]")
    page.locator("#stt-result pre", has_text="bytes for tiny-stt").wait_for()
    assert _unlabelled(page) == []

    # -- the remaining pages, for the record
    page.goto(server.url + "/")
    page.locator("#dep-states .card", has_text="running").wait_for()
    for path, name in (("/", "dashboard"), ("/workers", "workers"), ("/usage", "usage"), ("/users", "users")):
        page.goto(server.url + path)
        page.wait_for_load_state("networkidle")
        shot(name)
        assert _unlabelled(page) == [], path
    page.goto(server.url + "/workers")
    page.locator(".copyable pre", has_text="gpustack-core worker --server-url").wait_for()

    # -- narrow screen and dark theme
    narrow = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme="dark")
    narrow.add_cookies(context.cookies())
    npage = narrow.new_page()
    npage.goto(server.url + "/deployments")
    npage.locator("td", has_text="running").first.wait_for()
    assert (
        npage.evaluate("document.documentElement.scrollWidth") <= 390
    )  # wide tables scroll inside their frame
    npage.screenshot(path=str(screenshots / "deployments-390-dark.png"), full_page=True)
    narrow.close()

    # -- stop, start and duplicate from the list
    page.goto(server.url + "/deployments")
    row = page.locator("tr", has_text="tiny-chat-b")
    row.locator("button", has_text="Stop").click()
    row.locator("button", has_text="Start").wait_for()
    row.locator("text=running").wait_for(state="detached", timeout=60_000)
    row.locator("button", has_text="Start").click()
    row.locator("text=running").wait_for(timeout=60_000)
    row.locator("a", has_text="Edit").click()
    page.wait_for_url("**/deployments/tiny-chat-b/edit")
    expect(page.locator("#f-model")).to_have_value(str(tiny_gguf))
    assert page.locator("#f-name").is_disabled()
    page.fill("#f-env", "GREETING=hello")
    page.fill("#f-labels", "zone!=b")
    page.click("#save")
    page.wait_for_url(server.url + "/deployments")
    edited = httpx.get(f"{server.url}/api/v1/deployments/tiny-chat-b", headers=admin)
    spec = edited.json()["deployment"]["spec"]
    assert spec["env"] == {"GREETING": "********"}  # write-only: the API masks env values
    assert spec["label_selector"] == [{"key": "zone", "operator": "not_equals", "values": ["b"]}]
    row = page.locator("tr", has_text="tiny-chat-b")
    row.locator("a", has_text="Duplicate").click()
    page.wait_for_url("**/deployments/new?from=tiny-chat-b")
    expect(page.locator("#f-name")).to_have_value("tiny-chat-b-copy")
    expect(page.locator("#f-model")).to_have_value(str(tiny_gguf))

    # -- usage exported as CSV
    page.goto(server.url + "/usage")
    page.locator("#table td", has_text="tiny-chat").first.wait_for()
    with page.expect_download() as download:
        page.click("#csv")
    csv_lines = Path(download.value.path()).read_text().splitlines()
    assert csv_lines[0] == "day,user,key_id,model,requests,prompt_tokens,completion_tokens"
    assert any(",tiny-chat," in line for line in csv_lines[1:])

    # -- delete the deployment from the list
    page.goto(server.url + "/deployments")
    row = page.locator("tr", has_text="tiny-chat-b")
    row.locator("button", has_text="Delete").click()
    row.wait_for(state="detached", timeout=60_000)

    # -- log out: the session is revoked
    page.click("#logout")
    page.wait_for_url("**/login")
    r = httpx.get(f"{server.url}/api/v1/auth/me", cookies={"gpustack_session": session["value"]})
    assert r.status_code == 401
    context.close()


def _admin_chat(server: ConsoleServer, admin: dict[str, str], model: Path) -> None:
    body = {"name": "usage-probe", "model": f"local:{model}", "engine": "fake-openai"}
    assert httpx.post(f"{server.url}/api/v1/deployments", json=body, headers=admin).status_code == 201
    _wait_running(server, admin, "usage-probe")
    chat = {"model": "usage-probe", "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(f"{server.url}/v1/chat/completions", json=chat, headers=admin, timeout=30)
    assert r.status_code == 200, r.text


def test_a_user_cannot_reach_admin_pages_nor_other_keys(
    browser: Any, console_server: ConsoleServer, tiny_gguf: Path
) -> None:
    from playwright.sync_api import expect

    server = console_server
    admin = server.api_login()
    # the admin creates the user in the Users page
    admin_context = browser.new_context(viewport={"width": 1280, "height": 900})
    admin_page = admin_context.new_page()
    admin_page.set_default_timeout(30_000)
    admin_page.on("dialog", lambda d: d.accept())
    admin_page.goto(server.url + "/login")
    admin_page.fill("#password", server.admin_password)
    admin_page.click("button[type=submit]")
    landed = {server.url + "/", server.url + "/account/password?required=1"}
    admin_page.wait_for_url(lambda url: url in landed)
    if admin_page.url.endswith("required=1"):  # this test ran without the journey before it
        admin_page.fill("#current", server.admin_password)
        admin_page.fill("#new", NEW_PASSWORD)
        admin_page.fill("#again", NEW_PASSWORD)
        admin_page.click("button[type=submit]")
        admin_page.wait_for_url(server.url + "/")
        server.admin_password = NEW_PASSWORD
    admin_page.goto(server.url + "/users")
    admin_page.fill("#u-name", "alice")
    admin_page.fill("#u-password", "first-login-pw")
    admin_page.click("#user-form button[type=submit]")
    admin_page.locator("tr", has_text="alice").wait_for()
    r = httpx.post(f"{server.url}/api/v1/api-keys", json={"name": "admin-secret-key"}, headers=admin)
    assert r.status_code == 201, r.text
    admin_key_id = r.json()["record"]["id"]

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(server.url + "/login")
    page.fill("#username", "alice")
    page.fill("#password", "first-login-pw")
    page.click("button[type=submit]")
    page.wait_for_url("**/account/password?required=1")  # a password set by an admin is one-time
    page.fill("#current", "first-login-pw")
    page.fill("#new", "my-own-secret-9")
    page.fill("#again", "my-own-secret-9")
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/")

    # UI: no admin navigation, admin pages refused
    assert page.locator("nav.main a", has_text="Users").count() == 0
    response = page.goto(server.url + "/users")
    assert response is not None
    assert response.status == 403
    assert "This page is for admins" in page.inner_text("main")
    assert page.goto(server.url + "/deployments/new").status == 403
    page.goto(server.url + "/api-keys")
    page.fill("#k-name", "alice-key")
    page.click("#key-form button[type=submit]")
    page.locator("#the-key pre").wait_for()
    page.locator("td", has_text="alice-key").wait_for()
    assert page.locator("td", has_text="admin-secret-key").count() == 0
    csrf = page.get_attribute("meta[name=csrf-token]", "content")
    assert csrf

    # HTTP with the same session cookie: the API gives what the UI shows, no more
    request = context.request
    assert request.get(f"{server.url}/api/v1/users").status == 403
    keys = request.get(f"{server.url}/api/v1/api-keys").json()["items"]
    assert {k["name"] for k in keys if k["kind"] == "key"} == {"alice-key"}
    me = request.get(f"{server.url}/api/v1/auth/me").json()["user"]
    assert {k["user_id"] for k in keys} == {me["id"]}
    admin_id = httpx.get(f"{server.url}/api/v1/auth/me", headers=admin).json()["user"]["id"]
    admin_usage = httpx.get(f"{server.url}/api/v1/usage", params={"user_id": admin_id}, headers=admin)
    if admin_usage.json()["total"] == 0:  # this test ran alone: give the admin some usage first
        _admin_chat(server, admin, tiny_gguf)
        admin_usage = httpx.get(f"{server.url}/api/v1/usage", params={"user_id": admin_id}, headers=admin)
    assert admin_usage.json()["total"] > 0
    usage = request.get(f"{server.url}/api/v1/usage?user_id={admin_id}").json()["items"]
    assert all(row["user_id"] == me["id"] for row in usage)  # the admin's usage stays hidden
    headers = {"X-CSRF-Token": csrf}
    assert request.delete(f"{server.url}/api/v1/api-keys/{admin_key_id}", headers=headers).status == 404
    created = {"name": "tiny-x", "model": "local:/nonexistent.gguf", "engine": "fake-openai"}
    assert request.post(f"{server.url}/api/v1/deployments", data=created, headers=headers).status == 403

    # CSRF: a write authenticated by the cookie alone is refused
    forged = request.post(f"{server.url}/api/v1/api-keys", data={"name": "forged"})
    assert forged.status == 403
    assert "X-CSRF-Token" in forged.json()["detail"]
    ok = request.post(f"{server.url}/api/v1/api-keys", data={"name": "with-token"}, headers=headers)
    assert ok.status == 201
    expect(page.locator("#whoami")).to_have_text("alice")

    # revoking a key in the page: it is gone from the list and no longer works
    alice_key = page.inner_text("#the-key pre").strip()
    page.on("dialog", lambda d: d.accept())
    page.click("button[aria-label='Revoke key alice-key']")
    page.locator("td", has_text="alice-key").wait_for(state="detached")
    revoked = httpx.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {alice_key}"})
    assert revoked.status_code == 401

    # the admin disables alice: her session stops working at once
    row = admin_page.locator("tr", has_text="alice")
    row.locator("button", has_text="Disable").click()
    row.locator("text=disabled").wait_for()
    assert request.get(f"{server.url}/api/v1/auth/me").status == 401
    context.close()
    admin_context.close()
