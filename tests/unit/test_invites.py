"""Unit tests for hybridcon.core.invites: registrations, invite codes and redeeming."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hybridcon.core import invites
from hybridcon.core.invites import (
    MAX_DEVICE_LENGTH,
    InviteState,
    check_redeem,
    code_hash,
    derive_code,
    device_hash,
    new_device_id,
    normalise_code,
    parse_registrations,
)
from hybridcon.core.tokens import Role
from hybridcon.errors import Closed, Conflict, Invalid

CODE_RE = re.compile(r"[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}")
SECRET = b"s" * 32
T0 = datetime(2022, 5, 5, 8, 0, tzinfo=UTC)


def rows(text: str, **kwargs: Any) -> list[tuple[Any, ...]]:
    return [
        (r.line, r.ticket_id, r.name, r.email, r.role, r.scopes)
        for r in parse_registrations(text, **kwargs)
    ]


# --- parse_registrations: good files -------------------------------------------------


def test_plain_csv() -> None:
    text = "ticket_id,name,email\nT-1,Ann Peeters,ann@example.be\nT-2,Bo Janssens,\n"
    assert rows(text) == [
        (2, "T-1", "Ann Peeters", "ann@example.be", Role.VIEWER, ("*",)),
        (3, "T-2", "Bo Janssens", None, Role.VIEWER, ("*",)),
    ]


def test_utf8_bom_is_ignored() -> None:
    text = "\ufeffticket_id,name\nT-1,Zoë Maes\n"
    assert rows(text) == [(2, "T-1", "Zoë Maes", None, Role.VIEWER, ("*",))]


def test_semicolon_delimiter() -> None:
    text = "ticket_id;name;email\nT-1;Ann Peeters;ann@example.be\nT-2;Peeters, Jan;jan@x.be\n"
    assert rows(text) == [
        (2, "T-1", "Ann Peeters", "ann@example.be", Role.VIEWER, ("*",)),
        (3, "T-2", "Peeters, Jan", "jan@x.be", Role.VIEWER, ("*",)),
    ]


def test_tab_delimiter() -> None:
    assert rows("ticket_id\tname\nT-1\tAnn\n") == [(2, "T-1", "Ann", None, Role.VIEWER, ("*",))]


def test_crlf_quotes_and_extra_columns() -> None:
    text = 'Order,Ticket_ID,Name,EMAIL\r\n9,T-1,"Peeters, Ann",ann@x.be\r\n9,T-2,Bo,bo@x.be\r\n'
    assert rows(text) == [
        (2, "T-1", "Peeters, Ann", "ann@x.be", Role.VIEWER, ("*",)),
        (3, "T-2", "Bo", "bo@x.be", Role.VIEWER, ("*",)),
    ]


def test_first_and_last_name_columns() -> None:
    text = "ticket_id,first_name,last_name\nT-1,Ann,Peeters\nT-2,Bo,\nT-3,,Maes\n"
    assert [r[2] for r in rows(text)] == ["Ann Peeters", "Bo", "Maes"]


@pytest.mark.parametrize("column", ["name", "full_name", "naam", "NAAM"])
def test_name_column_aliases(column: str) -> None:
    assert rows(f"ticket_id,{column}\nT-1,Ann\n")[0][2] == "Ann"


def test_role_and_scopes_columns() -> None:
    text = (
        "ticket_id,name,role,scopes\n"
        "T-1,Ann,Moderator,stage:plenary;session:online-1\n"
        "T-2,Bo,organiser,*\n"
        "T-3,Cas,,\n"
        "T-4,Dirk,speaker,stage:plenary stage:radio stage:plenary\n"
    )
    assert [(r[4], r[5]) for r in rows(text)] == [
        (Role.MODERATOR, ("stage:plenary", "session:online-1")),
        (Role.ORGANISER, ("*",)),
        (Role.VIEWER, ("*",)),
        (Role.SPEAKER, ("stage:plenary", "stage:radio")),
    ]


def test_defaults_can_be_chosen() -> None:
    text = "ticket_id,name\nT-1,Ann\n"
    got = rows(text, default_role=Role.SPEAKER, default_scopes=("stage:plenary",))
    assert got == [(2, "T-1", "Ann", None, Role.SPEAKER, ("stage:plenary",))]


def test_blank_lines_are_skipped_but_counted() -> None:
    text = "ticket_id,name\n\nT-1,Ann\n,\n\nT-2,Bo\n"
    assert [(r[0], r[1]) for r in rows(text)] == [(3, "T-1"), (6, "T-2")]


def test_cells_are_stripped() -> None:
    assert rows("ticket_id,name,email\n  T-1 ,  Ann  , a@x.be \n")[0][1:4] == (
        "T-1",
        "Ann",
        "a@x.be",
    )


def test_short_row_reads_missing_cells_as_empty() -> None:
    assert rows("ticket_id,name,email\nT-1,Ann\n")[0][3] is None


# --- parse_registrations: refused files ----------------------------------------------


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("ticket_id,name\nT-1,Ann\n,Bo\n", r"^line 3: ticket_id is empty$"),
        (
            "ticket_id,name\nT-1,Ann\nT-2,Bo\nT-1,Cas\n",
            r"^line 4: ticket_id 'T-1' repeats line 2$",
        ),
        ("ticket_id,name,role\nT-1,Ann,admin\n", r"^line 2: unknown role 'admin'"),
        (
            "ticket_id,name,scopes\nT-1,Ann,stage:Plenary\n",
            r"^line 2: invalid scope 'stage:Plenary'",
        ),
        ("ticket_id,name,scopes\nT-1,Ann,foo:bar\n", r"^line 2: invalid scope 'foo:bar'"),
        (
            "ticket_id,name,email\nT-1,Ann,ann@x.be\nT-2,Bo,bo.example.be\n",
            r"^line 3: email 'bo.example.be' is not an e-mail address$",
        ),
        ("ticket_id,name,email\nT-1,Ann,a@" + "x" * 260 + "\n", r"^line 2: email"),
        ("ticket_id,name\nT-1,\n", r"^line 2: name is empty$"),
        ("ticket_id,first_name,last_name\nT-1,,\n", r"^line 2: name is empty$"),
        ("ticket_id,name\nT-1," + "n" * 81 + "\n", r"^line 2: name is longer than 80"),
        ("ticket_id,name\n" + "t" * 101 + ",Ann\n", r"^line 2: ticket_id is longer than 100"),
        ("name,email\nAnn,ann@x.be\n", r"^the CSV header has no 'ticket_id' column$"),
        ("ticket_id,email\nT-1,ann@x.be\n", r"no 'name' column \(nor 'first_name' and"),
        ("ticket_id,first_name\nT-1,Ann\n", r"no 'name' column"),
        ("", r"^the CSV file is empty$"),
        ("\ufeff", r"^the CSV file is empty$"),
        ("ticket_id,name\n", r"^the CSV file has a header but no registrations$"),
        ("ticket_id,name", r"^the CSV file has a header but no registrations$"),
        ("ticket_id,name\n,\n\n", r"^the CSV file has a header but no registrations$"),
    ],
)
def test_refused(text: str, match: str) -> None:
    with pytest.raises(Invalid, match=match):
        parse_registrations(text)


def test_line_number_counts_multi_line_quoted_cells() -> None:
    text = 'ticket_id,name\nT-1,"Ann\nPeeters"\nT-1,Bo\n'
    with pytest.raises(Invalid, match=r"^line 4: ticket_id 'T-1' repeats line 3$"):
        parse_registrations(text)


def test_row_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(invites, "MAX_ROWS", 3)
    ok = "ticket_id,name\n" + "".join(f"T-{i},N{i}\n" for i in range(3))
    assert len(parse_registrations(ok)) == 3
    with pytest.raises(Invalid, match="more than 3 rows"):
        parse_registrations(ok + "T-9,N9\n")


# --- codes ---------------------------------------------------------------------------


def test_derive_code_is_deterministic_and_well_formed() -> None:
    code = derive_code(SECRET, b"salt-1")
    assert code == derive_code(SECRET, b"salt-1")
    assert CODE_RE.fullmatch(code)


def test_derive_code_differs_across_salts_and_secrets() -> None:
    codes = {
        derive_code(SECRET, b"salt-1"),
        derive_code(SECRET, b"salt-2"),
        derive_code(b"t" * 32, b"salt-1"),
        derive_code(SECRET, b""),
    }
    assert len(codes) == 4


@given(secret=st.binary(max_size=64), salt=st.binary(max_size=64))
def test_any_derived_code_is_canonical(secret: bytes, salt: bytes) -> None:
    code = derive_code(secret, salt)
    assert CODE_RE.fullmatch(code)
    assert normalise_code(code) == code
    assert normalise_code(code.lower().replace("-", " ")) == code
    assert normalise_code(code.replace("-", "")) == code


@pytest.mark.parametrize(
    "typed",
    [
        "ABCD-EFGH-IJKL-MNOP",
        "abcd-efgh-ijkl-mnop",
        "ABCDEFGHIJKLMNOP",
        "abcd efgh ijkl mnop",
        "  AbCd-EfGh\tIjKl MnOp  ",
        "A-B-C-D-E-F-G-H-I-J-K-L-M-N-O-P",
    ],
)
def test_normalise_code_accepts(typed: str) -> None:
    assert normalise_code(typed) == "ABCD-EFGH-IJKL-MNOP"


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "ABCD-EFGH-IJKL-MNO",  # 15
        "ABCD-EFGH-IJKL-MNOPQ",  # 17
        "ABCD-EFGH-IJKL-MN01",  # 0 and 1 are not base32
        "ABCD-EFGH-IJKL-MN89",
        "ABCD_EFGH_IJKL_MNOP",
        "ABCD.EFGH.IJKL.MNOP",
        "ABCD-EFGH-IJKL-MNO=",
        "----",
    ],
)
def test_normalise_code_rejects(typed: str) -> None:
    with pytest.raises(Invalid, match="not an invite code"):
        normalise_code(typed)


@pytest.mark.parametrize("value", [None, 1234, b"ABCDEFGHIJKLMNOP"])
def test_normalise_code_rejects_non_strings(value: Any) -> None:
    with pytest.raises(Invalid, match="code must be a string"):
        normalise_code(value)


def test_code_hash() -> None:
    code = derive_code(SECRET, b"x")
    assert code_hash(code) == code_hash(code)
    assert len(code_hash(code)) == 32
    assert code_hash(code) != code_hash(derive_code(SECRET, b"y"))


# --- devices -------------------------------------------------------------------------


def test_device_hash() -> None:
    assert device_hash("phone-1") == device_hash("phone-1")
    assert device_hash("phone-1") != device_hash("phone-2")
    assert len(device_hash("x" * MAX_DEVICE_LENGTH)) == 32


@pytest.mark.parametrize("device", ["", "   ", "x" * (MAX_DEVICE_LENGTH + 1), None, 5])
def test_device_hash_rejects(device: Any) -> None:
    with pytest.raises(Invalid, match="device must be a non-empty string"):
        device_hash(device)


def test_new_device_id_is_random_and_acceptable() -> None:
    a, b = new_device_id(), new_device_id()
    assert a != b
    assert device_hash(a) != device_hash(b)


# --- redeeming -----------------------------------------------------------------------


def test_first_redeem_on_any_device_is_allowed() -> None:
    state = InviteState(valid_until=T0 + timedelta(days=1), device_hash=None)
    check_redeem(state, device_hash("phone"), T0)


def test_same_device_may_redeem_again() -> None:
    state = InviteState(valid_until=T0 + timedelta(days=1), device_hash=device_hash("phone"))
    check_redeem(state, device_hash("phone"), T0)
    check_redeem(state, device_hash("phone"), T0 + timedelta(hours=5))


def test_other_device_is_a_conflict() -> None:
    state = InviteState(valid_until=T0 + timedelta(days=1), device_hash=device_hash("phone"))
    with pytest.raises(Conflict, match="already redeemed on another device"):
        check_redeem(state, device_hash("laptop"), T0)


def test_redeem_until_and_not_after_valid_until() -> None:
    until = T0 + timedelta(days=1)
    state = InviteState(valid_until=until, device_hash=device_hash("phone"))
    check_redeem(state, device_hash("phone"), until)  # the last instant still counts
    with pytest.raises(Closed, match="expired at 2022-05-06T08:00:00"):
        check_redeem(state, device_hash("phone"), until + timedelta(microseconds=1))
    fresh = InviteState(valid_until=until, device_hash=None)
    with pytest.raises(Closed, match="expired"):
        check_redeem(fresh, device_hash("phone"), until + timedelta(seconds=1))


def test_expiry_is_reported_before_the_device_clash() -> None:
    state = InviteState(valid_until=T0, device_hash=device_hash("phone"))
    with pytest.raises(Closed):
        check_redeem(state, device_hash("laptop"), T0 + timedelta(seconds=1))


# --- round trip through a spreadsheet-like writer ------------------------------------

NAME_PARTS = ["Ann", "O'Brien", "'t Hooft", "'s Jacob", "D'Hondt", "Peeters,", "van den Berg"]


@given(
    delimiter=st.sampled_from([",", ";", "\t"]),
    lineterminator=st.sampled_from(["\n", "\r\n"]),
    names=st.lists(
        st.lists(st.sampled_from([*NAME_PARTS, "Zoë", "Jan-Piet"]), min_size=1, max_size=3).map(
            " ".join
        ),
        min_size=1,
        max_size=6,
    ),
    with_email=st.booleans(),
)
def test_registrations_written_by_csv_writer_read_back(
    delimiter: str, lineterminator: str, names: list[str], with_email: bool
) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator=lineterminator)
    writer.writerow(["ticket_id", "name"] + (["email"] if with_email else []))
    for i, name in enumerate(names):
        writer.writerow([f"T-{i}", name] + ([f"p{i}@example.be"] if with_email else []))
    got = parse_registrations(buffer.getvalue())
    assert [(r.ticket_id, r.name) for r in got] == [(f"T-{i}", n) for i, n in enumerate(names)]
    assert [r.line for r in got] == list(range(2, len(names) + 2))


def test_crlf_file_with_a_doubled_quote_at_the_end_of_a_line() -> None:
    text = 'ticket_id,name\r\nT-1,"Jan ""Sjakie"""\r\nT-2,Ann\r\n'
    assert [r.name for r in parse_registrations(text)] == ['Jan "Sjakie"', "Ann"]


def test_semicolon_file_the_sniffer_cannot_decide() -> None:
    text = 'ticket_id;name\r\nT-1;"Lee; Ann"\r\n'
    assert [r.name for r in parse_registrations(text)] == ["Lee; Ann"]
