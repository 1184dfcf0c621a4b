"""Run it as people use it: real coding agents through the gateway's protocol conversion.

- Claude Code (`claude -p`, Anthropic Messages) through the gateway to an upstream that speaks only
  OpenAI Chat Completions;
- Codex CLI (`codex exec`, OpenAI Responses) through the gateway to an upstream that speaks only
  Anthropic Messages;
- Gemini CLI (`gemini -p`, Gemini `streamGenerateContent`) through the gateway to an upstream that
  speaks only OpenAI Chat and to one that speaks only Anthropic Messages.

Both upstreams are the session's `octo-mock`. The prompt carries mock directives: `[mock:tool=NAME]`
makes the mock call the agent's own shell tool (arguments built from the tool's schema, the command
from `[mock:tool_arg=...]`), and once the conversation ends with a tool result the mock answers
`Hello from octo-mock. Tool result: <result>`. So a passing test means the agent's tool call came
back through the converted stream, the agent ran the command, sent its output back as a tool result
(converted into the upstream protocol) and printed the final text.

`[mock:tool_args=<base64 JSON>]` gives a call's exact arguments, multi-line strings included, so
the agents also do real file work, checked on disk afterwards: Claude Code's `Write` tool creates a
multi-line file, and Codex's `apply_patch` custom tool (upstream a function with one `input` string,
back at Codex a `custom_tool_call`, as Codex's session log confirms) applies a real patch that edits
one file and adds another.

The agents are installed with npm into `target/agents` (see `agents.py`); when that is impossible the
tests skip with the reason. Each agent run is bounded by `OCTOLLM_AGENT_TIMEOUT` (default 120 s); its
stdout and stderr are printed on failure. The agents run with an isolated HOME and config directory in
a temporary directory and with telemetry, auto-update and non-essential traffic disabled.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import agents as agent_install
from support import RUNNING, Proc, bin_path

#: How long one agent run may take.
AGENT_TIMEOUT = float(os.environ.get("OCTOLLM_AGENT_TIMEOUT", "120"))

#: The command the agents are asked (through the mock) to run, and what it prints.
MARKER = "octo-agent-tool-ran"
COMMAND = f"echo {MARKER}"
FINAL_PREFIX = "Hello from octo-mock. Tool result: "

#: The key the agents send; the gateway has no auth configured, so it must simply never go upstream.
AGENT_KEY = "sk-agent-client-key"

#: Backends: one that speaks only OpenAI Chat, one that speaks only Anthropic, both on the mock.
CHAT_KEY = "sk-upstream-agents-chat"
ANTH_KEY = "sk-upstream-agents-anth"

#: Exposed model → (backend, upstream model). Claude Code's main and small models go to the OpenAI
#: Chat backend; Codex's to the Anthropic one (`gpt-5.5` is in Codex's model catalogue, so Codex
#: sends its full tool set and a reasoning effort; `gpt-5-codex` is not, so Codex falls back to
#: default model metadata).
AGENT_MODELS = {
    "claude-sonnet-4-5": ("chat-only", "mock-gpt-agent"),
    "claude-haiku-4-5": ("chat-only", "mock-gpt-agent-small"),
    "gpt-5-codex": ("anthropic-only", "mock-claude-agent"),
    "gpt-5.5": ("anthropic-only", "mock-claude-agent"),
    # Gemini CLI: its main model per upstream (`-m`), and the small model it may use for side
    # questions (routing, next-speaker checks).
    "gemini-2.5-pro": ("chat-only", "mock-gpt-agent"),
    "gemini-2.5-flash": ("anthropic-only", "mock-claude-agent"),
    "gemini-2.5-flash-lite": ("chat-only", "mock-gpt-agent-small"),
}


def write_agent_gateway_config(path: Path, mock_url: str) -> None:
    text = f"""\
# Written by tests/sdk/test_agents.py
listen: "127.0.0.1:0"
backends:
  chat-only:
    base_url: "{mock_url}"
    protocol: openai_chat
    api_key: "{CHAT_KEY}"
  anthropic-only:
    base_url: "{mock_url}"
    protocol: anthropic
    api_key: "{ANTH_KEY}"
models:
"""
    for exposed, (backend, upstream) in AGENT_MODELS.items():
        text += (
            f'  "{exposed}":\n    retry: {{max_attempts: 1}}\n'
            f"    targets:\n      - {{backend: {backend}, model: {upstream}}}\n"
        )
    path.write_text(text, encoding="utf-8")


@pytest.fixture(scope="module")
def installed_agents() -> agent_install.Agents:
    found = agent_install.ensure()
    for name, version in found.versions.items():
        print(f"{name}: {version}")
    return found


@pytest.fixture(scope="module")
def agent_gateway(mock, tmp_path_factory: pytest.TempPathFactory):
    """An `octollm-server` of its own, with the two single-protocol backends on the session mock."""
    config = tmp_path_factory.mktemp("agent-gateway") / "octollm.yaml"
    write_agent_gateway_config(config, mock.url)
    proc = Proc("octollm-server", [str(bin_path("octollm-server")), "--config", str(config)])
    RUNNING.append(proc)
    try:
        yield proc.url
    finally:
        proc.stop()


# ------------------------------------------------------------------------------------------ running


@dataclass
class Run:
    argv: list[str]
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float

    def report(self) -> str:
        return (
            f"$ {' '.join(self.argv)}\nexit status: {self.returncode} after {self.seconds:.1f}s\n"
            f"--- stdout ---\n{self.stdout[-8000:]}\n--- stderr ---\n{self.stderr[-8000:]}"
        )


def base_env(home: Path) -> dict[str, str]:
    """A clean environment: no proxies, keys or config leak in from the caller's."""
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "TMPDIR": str(home / "tmp"),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "NO_COLOR": "1",
        "NO_PROXY": "127.0.0.1,localhost",
    }


def run_agent(argv: list[str], env: dict[str, str], cwd: Path) -> Run:
    """Runs the agent in its own process group, so that on timeout the whole group (the agents
    spawn helpers: Codex's Node launcher its native binary, both agents a shell) is killed."""
    cwd.mkdir(parents=True, exist_ok=True)
    Path(env["TMPDIR"]).mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    proc = subprocess.Popen(
        [str(a) for a in argv],
        cwd=str(cwd),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=AGENT_TIMEOUT)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        code = None
        err += f"\n[killed: no exit within {AGENT_TIMEOUT:g}s]"
    return Run([str(a) for a in argv], code, out, err, time.monotonic() - start)


# ------------------------------------------------------------------------------------------ checks


def upstream_summary(requests: list[dict]) -> str:
    lines = []
    for r in requests:
        body = r.get("body")
        if isinstance(body, dict):
            msgs = body.get("messages") or []
            last = msgs[-1] if msgs else {}
            lines.append(
                f"{r['method']} {r['path_and_query']} model={body.get('model')} "
                f"tools={len(body.get('tools') or [])} messages={len(msgs)} "
                f"last={json.dumps(last)[:200]}"
            )
        else:
            lines.append(f"{r['method']} {r['path_and_query']} (body not JSON)")
    return "\n".join(lines)


def check_upstream_headers(requests: list[dict], header: str, value: str, foreign: tuple[str, ...]) -> None:
    """The backend's key in `header`, the agent's key nowhere, and none of the client protocol's
    own headers (`foreign`), which mean nothing to the upstream's protocol."""
    for r in requests:
        headers = {k.lower(): v for k, v in r["headers"].items()}
        assert headers.get(header) == value, f"upstream {header} is {headers.get(header)!r}: {headers}"
        assert AGENT_KEY not in json.dumps(r["headers"]), f"the agent's key went upstream: {r['headers']}"
        for name in foreign:
            assert name not in headers, f"{name} was forwarded to a converted upstream: {headers}"


def tool_names(body: dict) -> list[str]:
    names = []
    for t in body.get("tools") or []:
        names.append(t.get("name") or (t.get("function") or {}).get("name"))
    return names


# ------------------------------------------------------------------------------------------ Claude Code


CLAUDE_PROMPT = f"Run the command. [mock:tool=Bash] [mock:tool_arg={COMMAND}]"


def run_claude(claude: Path, gateway_url: str, tmp_path: Path, prompt: str, allowed_tools: str) -> tuple[Run, Path]:
    """`claude -p prompt` in `tmp_path/work` with JSON output; returns the run and the work dir."""
    home = tmp_path / "home"
    env = base_env(home)
    env.update(
        {
            "CLAUDE_CONFIG_DIR": str(home / ".claude"),
            "ANTHROPIC_BASE_URL": gateway_url,
            "ANTHROPIC_API_KEY": AGENT_KEY,
            "ANTHROPIC_MODEL": "claude-sonnet-4-5",
            "ANTHROPIC_SMALL_FAST_MODEL": "claude-haiku-4-5",
            "ANTHROPIC_DEFAULT_HAIKU_MODEL": "claude-haiku-4-5",
            "ANTHROPIC_DEFAULT_SONNET_MODEL": "claude-sonnet-4-5",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        }
    )
    work = tmp_path / "work"
    argv = [claude, "-p", prompt, "--model", "claude-sonnet-4-5", "--allowedTools", allowed_tools]
    argv += ["--max-turns", "4", "--output-format", "json"]
    return run_agent(argv, env, work), work


def claude_result(run: Run, context: str) -> dict:
    """Claude's `--output-format json` result, checked to be a successful one."""
    assert run.returncode == 0, context
    try:
        result = json.loads(run.stdout)
    except ValueError:
        pytest.fail(f"claude --output-format json printed no JSON\n{context}")
    assert result.get("is_error") is False, context
    return result


def check_chat_upstream(requests: list[dict], context: str) -> None:
    """Every upstream request is OpenAI Chat, for the backend's models, with the backend's key."""
    assert requests, context
    for r in requests:
        assert r["path_and_query"] == "/v1/chat/completions", context
        assert r["body"]["model"] in ("mock-gpt-agent", "mock-gpt-agent-small"), context
    check_upstream_headers(requests, "authorization", f"Bearer {CHAT_KEY}", ("anthropic-beta", "anthropic-version"))


def chat_tool_turn(requests: list[dict], context: str) -> tuple[dict, dict, dict, str]:
    """The single Chat request that ends with a tool result: (its body, the assistant's one tool
    call, the `tool` message answering it, that message's text)."""
    turns = [r["body"] for r in requests if r["body"]["messages"][-1].get("role") == "tool"]
    assert len(turns) == 1, context
    messages = turns[0]["messages"]
    call_message = messages[-2]
    assert call_message["role"] == "assistant", context
    (call,) = call_message["tool_calls"]
    result_message = messages[-1]
    assert result_message["tool_call_id"] == call["id"], context
    content = result_message["content"]
    text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
    return turns[0], call, result_message, text


def test_claude_code_tool_turn_through_openai_chat_upstream(installed_agents, agent_gateway, mock, tmp_path):
    claude = installed_agents.command("claude")
    run, _ = run_claude(claude, agent_gateway, tmp_path, CLAUDE_PROMPT, "Bash")
    requests = mock.requests(body=True)
    context = f"{run.report()}\n--- upstream requests ---\n{upstream_summary(requests)}"
    result = claude_result(run, context)
    assert result.get("result") == FINAL_PREFIX + MARKER, context
    check_chat_upstream(requests, context)

    # The turn: the mock's tool call came back in the next request as an assistant tool call
    # followed by a `tool` message with the command's output.
    turn, call, _, text = chat_tool_turn(requests, context)
    assert call["function"]["name"] == "Bash", context
    assert json.loads(call["function"]["arguments"]) == {"command": COMMAND}, context
    assert text.strip() == MARKER, context
    assert "Bash" in tool_names(turn), context
    # Anthropic's system prompt arrives as the first, `system`, message.
    assert turn["messages"][0]["role"] == "system", context


#: What Claude Code is made to write: several lines, quotes, a backslash, a bracket, non-ASCII.
WRITTEN_FILE = "notes/octo-written.md"
WRITTEN_CONTENT = '# Written by Claude Code\n\nline "two" with a \\ backslash\n[mock-like] brackets, ünïcode\n'


def tool_args_directive(args: dict) -> str:
    """`[mock:tool_args=…]`: the mock calls the tool with exactly `args` (see octo-mock's docs)."""
    return f"[mock:tool_args={base64.b64encode(json.dumps(args).encode()).decode()}]"


def test_claude_code_writes_a_file_through_openai_chat_upstream(installed_agents, agent_gateway, mock, tmp_path):
    """The mock calls Claude Code's `Write` tool with an exact multi-line content; Claude Code
    writes the file into its working directory, and its result goes back upstream as the `tool`
    message of the same call."""
    claude = installed_agents.command("claude")
    target = tmp_path / "work" / WRITTEN_FILE
    args = {"file_path": str(target), "content": WRITTEN_CONTENT}
    prompt = f"Write the notes. [mock:tool=Write] {tool_args_directive(args)}"
    run, _ = run_claude(claude, agent_gateway, tmp_path, prompt, "Write")
    requests = mock.requests(body=True)
    context = f"{run.report()}\n--- upstream requests ---\n{upstream_summary(requests)}"
    result = claude_result(run, context)
    check_chat_upstream(requests, context)

    turn, call, _, text = chat_tool_turn(requests, context)
    assert "Write" in tool_names(turn), f"Claude Code sent no Write tool\n{context}"
    assert call["function"]["name"] == "Write", context
    assert json.loads(call["function"]["arguments"]) == args, context
    assert target.is_file(), f"{target} was not written: tool result {text!r}\n{context}"
    assert target.read_text(encoding="utf-8") == WRITTEN_CONTENT, context
    assert str(target) in text, context
    # The mock's final answer echoes the start of that tool result.
    assert result.get("result") == (FINAL_PREFIX + text[:64]).rstrip(), context


# ------------------------------------------------------------------------------------------ Codex CLI


def codex_config(codex_home: Path, gateway_url: str, model: str) -> None:
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(
        f"""\
# Written by tests/sdk/test_agents.py
model = "{model}"
model_provider = "octo"
approval_policy = "never"
sandbox_mode = "danger-full-access"
check_for_update_on_startup = false

[model_providers.octo]
name = "OctoLLM"
base_url = "{gateway_url}/v1"
wire_api = "responses"
env_key = "OCTO_KEY"
request_max_retries = 0
stream_max_retries = 0

[analytics]
enabled = false
""",
        encoding="utf-8",
    )


#: Codex's shell tool: `exec_command` (`cmd`) in current releases.
CODEX_SHELL_TOOL = "exec_command"
CODEX_PROMPT = f"Run the command. [mock:tool={CODEX_SHELL_TOOL}] [mock:tool_arg={COMMAND}]"


@pytest.mark.parametrize("model", ["gpt-5-codex", "gpt-5.5"])
def test_codex_tool_turn_through_anthropic_upstream(installed_agents, agent_gateway, mock, tmp_path, model):
    codex = installed_agents.command("codex")
    home = tmp_path / "home"
    codex_home = home / ".codex"
    codex_config(codex_home, agent_gateway, model)
    env = base_env(home)
    env.update({"CODEX_HOME": str(codex_home), "OCTO_KEY": AGENT_KEY})
    work = tmp_path / "work"
    run = run_agent(
        [codex, "exec", "--skip-git-repo-check", "--color", "never", "-m", model, "-C", str(work), CODEX_PROMPT],
        env,
        work,
    )
    requests = mock.requests(body=True)
    context = f"{run.report()}\n--- upstream requests ---\n{upstream_summary(requests)}"
    assert run.returncode == 0, context
    assert FINAL_PREFIX in run.stdout, context

    # Every upstream request is Anthropic Messages, with the backend's key.
    assert requests, context
    for r in requests:
        assert r["path_and_query"] == "/v1/messages", context
        assert r["body"]["model"] == "mock-claude-agent", context
        assert r["body"]["max_tokens"] > 0, context
    check_upstream_headers(requests, "x-api-key", ANTH_KEY, ("openai-beta",))

    def ends_with_tool_result(body: dict) -> bool:
        last = body["messages"][-1]
        return last["role"] == "user" and any(
            isinstance(b, dict) and b.get("type") == "tool_result" for b in last.get("content") or []
        )

    turns = [r["body"] for r in requests if ends_with_tool_result(r["body"])]
    assert len(turns) == 1, context
    messages = turns[0]["messages"]
    (use,) = [b for b in messages[-2]["content"] if b.get("type") == "tool_use"]
    assert messages[-2]["role"] == "assistant", context
    (result,) = [b for b in messages[-1]["content"] if b.get("type") == "tool_result"]
    assert result["tool_use_id"] == use["id"], context
    output = result["content"]
    output = output if isinstance(output, str) else "".join(b.get("text", "") for b in output)
    if CODEX_SHELL_TOOL in tool_names(turns[0]):
        # The mock called the shell tool with a valid command: Codex ran it.
        assert use["name"] == CODEX_SHELL_TOOL, context
        assert use["input"] == {"cmd": COMMAND}, context
        assert MARKER in output, context
        assert FINAL_PREFIX + output[:10] in run.stdout, context
    else:
        # A Codex without that tool: the mock called the first tool with placeholder arguments and
        # Codex answered with an error result, which still completes a tool-using turn.
        print(f"note: Codex defines no {CODEX_SHELL_TOOL} tool: {tool_names(turns[0])}")
    # The Responses `developer` instructions became the Anthropic system prompt.
    assert "Codex" in json.dumps(turns[0].get("system")), context



#: Codex's free-form patch tool (an OpenAI Responses `custom` tool with a Lark grammar).
CODEX_PATCH_TOOL = "apply_patch"
#: A file in Codex's working directory before the patch, and after it.
PATCHED_FILE = "src/greeting.txt"
PATCHED_BEFORE = "Hello,\nold world!\nBye.\n"
PATCHED_AFTER = "Hello,\nOctoLLM world!\nBye.\n"
#: The file the patch adds, and its content.
ADDED_FILE = "docs/added by patch.md"
ADDED_CONTENT = '# Added\n\nquotes "here", a \\ backslash, [brackets], ünïcode\n'
#: A real patch in Codex's format: edits one file, adds another.
CODEX_PATCH = (
    "*** Begin Patch\n"
    f"*** Update File: {PATCHED_FILE}\n"
    "@@\n"
    " Hello,\n"
    "-old world!\n"
    "+OctoLLM world!\n"
    " Bye.\n"
    f"*** Add File: {ADDED_FILE}\n"
    + "".join(f"+{line}\n" for line in ADDED_CONTENT.splitlines())
    + "*** End Patch"
)


def test_codex_custom_patch_tool_through_anthropic_upstream(installed_agents, agent_gateway, mock, tmp_path):
    """Codex's `apply_patch` custom tool reaches the Anthropic upstream as a function with one
    `input` string parameter; the upstream's call (a real multi-line patch) comes back to Codex as
    a `custom_tool_call`, Codex applies it to its working directory, and its
    `custom_tool_call_output` goes back as the `tool_result` with the same id."""
    codex = installed_agents.command("codex")
    home = tmp_path / "home"
    codex_home = home / ".codex"
    codex_config(codex_home, agent_gateway, "gpt-5.5")
    env = base_env(home)
    env.update({"CODEX_HOME": str(codex_home), "OCTO_KEY": AGENT_KEY})
    work = tmp_path / "work"
    (work / PATCHED_FILE).parent.mkdir(parents=True)
    (work / PATCHED_FILE).write_text(PATCHED_BEFORE, encoding="utf-8")
    prompt = f"Patch the files. [mock:tool={CODEX_PATCH_TOOL}] {tool_args_directive({'input': CODEX_PATCH})}"
    run = run_agent(
        [codex, "exec", "--skip-git-repo-check", "--color", "never", "-m", "gpt-5.5", "-C", str(work), prompt],
        env,
        work,
    )
    requests = mock.requests(body=True)
    context = f"{run.report()}\n--- upstream requests ---\n{upstream_summary(requests)}"
    assert run.returncode == 0, context
    assert requests, context
    first = requests[0]["body"]
    patch_tools = [t for t in first.get("tools") or [] if t.get("name") == CODEX_PATCH_TOOL]
    if not patch_tools:
        pytest.skip(f"this Codex declares no {CODEX_PATCH_TOOL} tool: {tool_names(first)}")
    (tool,) = patch_tools
    assert tool["input_schema"]["required"] == ["input"], context
    assert tool["input_schema"]["properties"]["input"]["type"] == "string", context

    turns = [
        r["body"]
        for r in requests
        if any(
            isinstance(b, dict) and b.get("type") == "tool_result"
            for b in r["body"]["messages"][-1].get("content") or []
        )
    ]
    assert len(turns) == 1, context
    messages = turns[0]["messages"]
    (use,) = [b for b in messages[-2]["content"] if b.get("type") == "tool_use"]
    assert use["name"] == CODEX_PATCH_TOOL, context
    assert use["input"] == {"input": CODEX_PATCH}, context
    (result,) = [b for b in messages[-1]["content"] if b.get("type") == "tool_result"]
    assert result["tool_use_id"] == use["id"], context
    output = result["content"]
    output = output if isinstance(output, str) else "".join(b.get("text", "") for b in output)

    # Codex applied the patch: one file edited, one added, byte for byte.
    assert (work / PATCHED_FILE).read_text(encoding="utf-8") == PATCHED_AFTER, f"tool result {output!r}\n{context}"
    assert (work / ADDED_FILE).read_text(encoding="utf-8") == ADDED_CONTENT, f"tool result {output!r}\n{context}"
    assert not result.get("is_error"), context
    assert PATCHED_FILE in output and ADDED_FILE in output, context
    assert FINAL_PREFIX in run.stdout, context

    # Codex's session log shows how the call reached it: a `custom_tool_call` (not a function call)
    # with the upstream's id and the patch as its raw input, answered by a `custom_tool_call_output`.
    items = codex_rollout_items(codex_home)
    if not items:
        print(f"note: no Codex session log under {codex_home}; the call's client-side type is unchecked")
        return
    calls = [i for i in items if i.get("call_id") == use["id"]]
    assert [i.get("type") for i in calls] == ["custom_tool_call", "custom_tool_call_output"], f"{calls}\n{context}"
    assert calls[0]["name"] == CODEX_PATCH_TOOL and calls[0]["input"] == CODEX_PATCH, context


def codex_rollout_items(codex_home: Path) -> list[dict]:
    """The response items Codex recorded in its session logs (`sessions/**/*.jsonl`), in order."""
    items = []
    for path in sorted(codex_home.glob("sessions/**/*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("type") == "response_item":
                payload = entry.get("payload")
                if isinstance(payload, dict):
                    items.append(payload)
    return items


# ------------------------------------------------------------------------------------------ Gemini CLI

#: Gemini CLI's settings: API-key auth (Gemini CLI refuses to start without a selected auth type),
#: no telemetry, usage statistics or update checks.
GEMINI_SETTINGS = {
    "security": {"auth": {"selectedType": "gemini-api-key"}},
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
    "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
}

#: Gemini CLI's file-writing tool and what it is made to write (several lines, quotes, a
#: backslash, brackets, non-ASCII).
GEMINI_WRITE_TOOL = "write_file"
GEMINI_FILE = "notes/gemini-written.md"
GEMINI_CONTENT = '# Written by Gemini CLI\n\nline "two" with a \\ backslash\n[brackets], ünïcode\n'


def run_gemini(gemini: Path, gateway_url: str, tmp_path: Path, model: str, prompt: str) -> tuple[Run, Path]:
    """`gemini -p prompt -m model --yolo --output-format json` in `tmp_path/work`, pointed at the
    gateway by `GOOGLE_GEMINI_BASE_URL` with the agent's key in `GEMINI_API_KEY`."""
    home = tmp_path / "home"
    settings = home / ".gemini" / "settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps(GEMINI_SETTINGS), encoding="utf-8")
    env = base_env(home)
    env.update(
        {
            "GOOGLE_GEMINI_BASE_URL": gateway_url,
            "GEMINI_API_KEY": AGENT_KEY,
            # A throwaway directory: trust it, so that the non-interactive run may use its tools.
            "GEMINI_CLI_TRUST_WORKSPACE": "true",
        }
    )
    work = tmp_path / "work"
    argv = [gemini, "-p", prompt, "-m", model, "--yolo", "--output-format", "json"]
    return run_agent(argv, env, work), work


def gemini_result(run: Run, context: str) -> dict:
    """Gemini CLI's `--output-format json` result, checked to hold no error."""
    assert run.returncode == 0, context
    start = run.stdout.find("{")
    try:
        result = json.loads(run.stdout[start:])
    except ValueError:
        pytest.fail(f"gemini --output-format json printed no JSON\n{context}")
    assert not result.get("error"), context
    return result


@pytest.mark.parametrize(
    "model, upstream",
    [("gemini-2.5-pro", "openai_chat"), ("gemini-2.5-flash", "anthropic")],
)
def test_gemini_cli_writes_a_file(installed_agents, agent_gateway, mock, tmp_path, model, upstream):
    """The mock calls Gemini CLI's `write_file` tool with an exact multi-line content: the call
    reaches Gemini CLI as a Gemini `functionCall` converted from the upstream's protocol, Gemini CLI
    writes the file, and its `functionResponse` goes back upstream as the tool result of the same
    call (a `tool` message for OpenAI Chat, a `tool_result` block for Anthropic)."""
    gemini = installed_agents.command("gemini")
    target = tmp_path / "work" / GEMINI_FILE
    args = {"file_path": str(target), "content": GEMINI_CONTENT}
    prompt = f"Write the notes. [mock:tool={GEMINI_WRITE_TOOL}] {tool_args_directive(args)}"
    run, _ = run_gemini(gemini, agent_gateway, tmp_path, model, prompt)
    requests = mock.requests(body=True)
    context = f"{run.report()}\n--- upstream requests ---\n{upstream_summary(requests)}"
    result = gemini_result(run, context)
    assert target.is_file(), f"{target} was not written\n{context}"
    assert target.read_text(encoding="utf-8") == GEMINI_CONTENT, context
    assert str(result.get("response", "")).startswith(FINAL_PREFIX), context

    backend, upstream_model = AGENT_MODELS[model]
    mine = [r for r in requests if r["body"].get("model") == upstream_model]
    assert mine, context
    if upstream == "openai_chat":
        for r in mine:
            assert r["path_and_query"] == "/v1/chat/completions", context
        check_upstream_headers(mine, "authorization", f"Bearer {CHAT_KEY}", ("x-goog-api-key",))
        turn, call, _, text = chat_tool_turn(mine, context)
        assert GEMINI_WRITE_TOOL in tool_names(turn), context
        assert call["function"]["name"] == GEMINI_WRITE_TOOL, context
        assert json.loads(call["function"]["arguments"]) == args, context
    else:
        for r in mine:
            assert r["path_and_query"] == "/v1/messages", context
            assert r["body"]["max_tokens"] > 0, context
        check_upstream_headers(mine, "x-api-key", ANTH_KEY, ("x-goog-api-key",))
        turns = [
            r["body"]
            for r in mine
            if any(
                isinstance(b, dict) and b.get("type") == "tool_result"
                for b in r["body"]["messages"][-1].get("content") or []
            )
        ]
        assert len(turns) == 1, context
        messages = turns[0]["messages"]
        assert GEMINI_WRITE_TOOL in tool_names(turns[0]), context
        (use,) = [b for b in messages[-2]["content"] if b.get("type") == "tool_use"]
        assert use["name"] == GEMINI_WRITE_TOOL and use["input"] == args, context
        (tool_result,) = [b for b in messages[-1]["content"] if b.get("type") == "tool_result"]
        assert tool_result["tool_use_id"] == use["id"], context
        content = tool_result["content"]
        text = content if isinstance(content, str) else "".join(b.get("text", "") for b in content)
        # Gemini CLI's instructions became the Anthropic system prompt.
        assert "Gemini CLI" in json.dumps(turns[0].get("system")), context
    assert str(target) in text, f"tool result {text!r}\n{context}"
