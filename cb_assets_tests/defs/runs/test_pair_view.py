"""What a pair-run's materialization shows of its conversation: the stored rows, as markdown."""

import json

from cb_assets.defs.conversations import messages
from cb_assets.defs.runs.pair_view import conversation_markdown
from cb_assets_tests.support.services import require_real_logs

REAL_PAIR = "nano_msg_1/coop/pallets_click_task/2068/f1_f6"


def test_a_real_conversation_reads_as_markdown_from_its_rows() -> None:
    path = require_real_logs() / REAL_PAIR / "conversation.json"
    rows = messages.rows_to_frame(
        messages.conversation_rows(
            path,
            experiment="nano",
            setting="coop-comm",
            repeat=1,
            arm="nano/coop-comm",
            pair="pallets_click_task-2068-f1_f6",
        )
    )
    shown = conversation_markdown(rows)
    raw = json.loads(path.read_text())
    assert shown.count("→") == len(raw) == 5
    for message in raw:
        assert f"**{message['from']} → {message['to']}**" in shown
        assert message["message"][:60] in shown


def test_no_file_shows_nothing_and_an_empty_one_says_so() -> None:
    assert conversation_markdown(None) is None
    empty = messages.rows_to_frame([])
    assert conversation_markdown(empty) == "(no messages)"


def test_missing_sender_and_text_are_shown_as_unknown_and_empty() -> None:
    row = {column: None for column in messages.CONVERSATION_DTYPES}
    row.update(message_index=0, experiment="e", setting="coop-comm", repeat=1)
    shown = conversation_markdown(messages.rows_to_frame([row]))
    assert shown.startswith("**? → ?**")
