"""The tools file: the bundled servers, a site file over them, and errors that name the
file, the entry and the field."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sitemesh.config import load_settings
from sitemesh.errors import ConfigError
from sitemesh.tools import (
    BUNDLED_TOOLS_FILE,
    ToolConfigError,
    load_tool_specs,
    parse_tool_specs,
    tools_file,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tools.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_bundled_servers_are_stdio_tools_of_this_interpreter() -> None:
    specs = load_tool_specs(None)
    # crm is bundled switched off: a site turns it on in its tools file
    assert [s.name for s in specs] == ["kb_search", "telemetry_query", "ticket_history"]
    for spec in specs:
        command, args = spec.argv
        assert spec.transport == "stdio"
        assert spec.sitemesh_env
        assert command == sys.executable
        assert args == ["-m", f"sitemesh.tools.servers.{spec.name}"]
        assert spec.endpoint.endswith(f"-m sitemesh.tools.servers.{spec.name}")


def test_a_site_file_adds_overrides_and_switches_off(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[tools]]
name = "crm"
transport = "http"
url = "http://crm.internal:8931/mcp"
timeout_s = 3

[[tools]]
name = "kb_search"
transport = "stdio"
command = "true"
enabled = false

[[tools]]
name = "weather"
transport = "python"
target = "examples.mcp_server.weather:server"
side_effects = false
rate_limit_calls = 10
rate_limit_per_s = 60
""",
    )
    specs = {s.name: s for s in load_tool_specs(path)}
    assert list(specs) == ["crm", "telemetry_query", "ticket_history", "weather"]
    assert (specs["crm"].transport, specs["crm"].timeout_s) == ("http", 3.0)
    assert specs["weather"].rate_limit_calls == 10
    assert specs["weather"].side_effects is False
    assert specs["ticket_history"].side_effects is None  # unset: the annotations decide


def test_bundled_false_keeps_only_the_site_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """bundled = false
[[tools]]
name = "mine"
transport = "http"
url = "https://tools.example.com/mcp"
""",
    )
    assert [s.name for s in load_tool_specs(path)] == ["mine"]
    with pytest.raises(ToolConfigError, match="only a site's tools file"):
        parse_tool_specs("bundled = false\n", path=str(BUNDLED_TOOLS_FILE))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[tools]\n", "not valid TOML"),
        (
            '[[tools]]\nname = "x"\ntransport = "stdio"\ncommand = "c"\ntimeout = 3\n',
            "tools[0] 'x': Object contains unknown field `timeout`",
        ),
        (
            '[[tools]]\nname = "x"\ntransport = "stdio"\ncommand = "c"\ntimeout_s = 0\n',
            "tools[0] 'x': timeout_s: Expected `float` > 0.0",
        ),
        (
            '[[tools]]\nname = "x"\ntransport = "ftp"\n',
            "tools[0] 'x': transport: Invalid enum value 'ftp'",
        ),
        (
            '[[tools]]\nname = "Bad Name"\ntransport = "stdio"\ncommand = "c"\n',
            "tools[0] 'Bad Name': name: Expected `str` matching regex",
        ),
        (
            '[[tools]]\nname = "x"\ntransport = "stdio"\n',
            "tools[0] 'x': command: required for transport 'stdio'",
        ),
        (
            '[[tools]]\nname = "x"\ntransport = "http"\nurl = "ftp://h"\n',
            "tools[0] 'x': url: must start with http:// or https://",
        ),
        (
            '[[tools]]\nname = "x"\ntransport = "python"\ntarget = "no_colon"\n',
            "tools[0] 'x': target: expected 'module:attr'",
        ),
        (
            '[[tools]]\nname = "x"\ntransport = "stdio"\ncommand = "c"\nurl = "http://h"\n',
            "tools[0] 'x': url: only for transport 'http'",
        ),
        (
            '[[tools]]\nname = "x"\ntransport = "stdio"\ncommand = "c"\n'
            '[[tools]]\nname = "x"\ntransport = "stdio"\ncommand = "d"\n',
            "tools[1] 'x': name: used by an earlier entry",
        ),
        (
            '[[tools]]\nname = "x"\ntransport = "stdio"\ncommand = "c"\nretries = 11\n',
            "tools[0] 'x': retries: Expected `int` <= 10",
        ),
        ("tools = 3\n", "Expected `array`, got `int` - at `tools`"),
    ],
)
def test_errors_name_the_file_entry_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ToolConfigError) as caught:
        load_tool_specs(path)
    assert isinstance(caught.value, ConfigError)
    assert caught.value.key == "tools.file"
    assert str(caught.value).startswith(f"tools.file: {path}: ")
    assert message in str(caught.value)


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ToolConfigError, match=f"{missing}: cannot read it"):
        load_tool_specs(missing)


def test_the_file_comes_from_settings_or_the_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert tools_file(load_settings(state_dir=tmp_path)) is None
    own = write(tmp_path, "")
    assert tools_file(load_settings(state_dir=tmp_path)) == own
    monkeypatch.setenv("SITEMESH_TOOLS_FILE", str(tmp_path / "site.toml"))
    monkeypatch.setenv("SITEMESH_TOOLS_REPLAY", "strict")
    settings = load_settings(state_dir=tmp_path)
    assert tools_file(settings) == tmp_path / "site.toml"
    assert settings.tools.replay == "strict"
    assert settings.to_env()["SITEMESH_TOOLS_FILE"] == str(tmp_path / "site.toml")
