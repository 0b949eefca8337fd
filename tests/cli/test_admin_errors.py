"""The admin CLI turns an API error body back into the errors tree by its code, and prints
every error in one form with the error's exit code."""

from __future__ import annotations

import json
import sys

import httpx
import pytest

from netpersona import errors
from netpersona.cli import main as cli_main
from netpersona.cli.admin_cmd import AdminClient, error_from_answer


def _answer(status: int, body: object) -> AdminClient:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=json.dumps(body).encode())

    return AdminClient("http://metadata", "np_x", transport=httpx.MockTransport(handler))


def _tree() -> list[type[errors.NetpersonaError]]:
    classes = [getattr(errors, name) for name in errors.__all__]
    return [c for c in classes if isinstance(c, type) and issubclass(c, errors.NetpersonaError)]


@pytest.mark.parametrize("cls", _tree(), ids=lambda c: c.__name__)
def test_every_code_comes_back_with_its_exit_code(cls: type[errors.NetpersonaError]) -> None:
    body = {"error": {"code": cls.code, "message": "what went wrong"}}
    with pytest.raises(errors.NetpersonaError) as raised:
        _answer(cls.http_status, body).request("GET", "/v1/admin/instances")
    # The most general class with that code (UnitError's code is invalid_value), or for the
    # two that need more than a message to be made (command_failed) their parent.
    assert issubclass(cls, type(raised.value))
    assert raised.value.exit_code == cls.exit_code
    assert "what went wrong" in str(raised.value)


def test_the_code_decides_not_the_status() -> None:
    # 500 is shared by several kinds; the code tells a corrupt store from a kernel error.
    found = error_from_answer("GET /x", 500, '{"error": {"code": "store_corrupt", "message": "m"}}')
    assert isinstance(found, errors.StoreCorrupt)
    assert found.exit_code == 11


def test_field_errors_keep_their_pointers() -> None:
    body = {
        "error": {
            "code": "invalid_document",
            "message": "m",
            "errors": [{"pointer": "/persona", "message": "no persona 'x'"}],
        }
    }
    with pytest.raises(errors.InvalidDocument) as raised:
        _answer(422, body).request("PUT", "/v1/admin/instances/a/pin")
    assert [str(e) for e in raised.value.errors] == ["/persona: no persona 'x'"]


def test_an_answer_that_is_not_the_error_body_is_still_an_error() -> None:
    found = error_from_answer("GET /x", 502, "<html>bad gateway</html>")
    assert type(found) is errors.NetpersonaError
    assert "502" in str(found)


def test_main_prints_one_line_form_and_exits_with_the_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(**kwargs: object) -> None:
        raise errors.InvalidDocument(
            [errors.FieldError("/a", "first problem"), errors.FieldError("/b", "second")]
        )

    monkeypatch.setattr(cli_main, "app", fail)
    monkeypatch.setattr(sys, "argv", ["netpersona"])
    with pytest.raises(SystemExit) as exited:
        cli_main.main()
    assert exited.value.code == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "error (invalid_document) /a: first problem",
        "error (invalid_document) /b: second",
    ]
