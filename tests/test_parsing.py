"""Answer parsing: grounding spans, multiple-choice letters and the output template."""

from __future__ import annotations

import pytest

from scenetg.grounding.parsing import answer_text, format_ok, parse_answer, parse_choice, parse_time


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<think>x</think><answer>12.5 - 17.8</answer>", (12.5, 17.8)),
        ("<answer>12.5-17.8</answer>", (12.5, 17.8)),
        ("<answer>12.5 to 17.8</answer>", (12.5, 17.8)),
        ("<answer>12.5–17.8</answer>", (12.5, 17.8)),  # en dash
        ("<answer>12.5 — 17.8</answer>", (12.5, 17.8)),  # em dash
        ("<answer>12.5 ~ 17.8</answer>", (12.5, 17.8)),
        ("<answer>12 - 18</answer>", (12.0, 18.0)),
        ("<answer>12.5s - 17.8s</answer>", (12.5, 17.8)),
        ("<answer>12.5 seconds to 17.8 seconds</answer>", (12.5, 17.8)),
        ("<answer>12.5 sec - 17.8 secs</answer>", (12.5, 17.8)),
        ("<answer>01:05 - 01:10</answer>", (65.0, 70.0)),
        ("<answer>1:05.5 - 1:10.25</answer>", (65.5, 70.25)),
        ("<answer>75:30 - 76:00</answer>", (4530.0, 4560.0)),
        ("<answer>00:01:05.5 - 01:00:00</answer>", (65.5, 3600.0)),
        ("<answer>[12.5, 17.8]</answer>", (12.5, 17.8)),
        ("<answer>between 12.5 and 17.8</answer>", (12.5, 17.8)),
        ("<answer>from 12.5 until 17.8.</answer>", (12.5, 17.8)),
        ("<answer> start: 12.5, end: 17.8 </answer>", (12.5, 17.8)),
        ("<answer>start 12.5 end 17.8</answer>", (12.5, 17.8)),  # exactly two times
        ("The event happens from 12.5 to 17.8 seconds.", (12.5, 17.8)),  # no tags: whole text
        ("12.5 - 17.8", (12.5, 17.8)),
        # the last <answer> block wins; reasoning numbers are ignored
        ("<answer>1 - 2</answer><answer>3 - 4</answer>", (3.0, 4.0)),
        ("<think>frames 3 - 5 look dark</think>The moment is 10 - 15", (10.0, 15.0)),
        ("<think>maybe 3 - 5</think><answer>10 - 15</answer>", (10.0, 15.0)),
        ("The man stands 2 - 3 times. Final: 10 - 15", (10.0, 15.0)),  # last span
        ("<answer>12.5 - 17.8</answer", (12.5, 17.8)),  # broken tag: whole text still parses
        ("<think>ok</think><answer>12.5 - 17.8", (12.5, 17.8)),  # cut before </answer>
        # returned as given: judging start >= end is the reward's / metric's job
        ("<answer>17.8 - 12.5</answer>", (17.8, 12.5)),
        ("<answer>5 - 5</answer>", (5.0, 5.0)),
        ("<answer>0 - 99999</answer>", (0.0, 99999.0)),
    ],
)
def test_parse_answer_accepts(text, expected):
    got = parse_answer(text)
    assert got is not None
    assert got == pytest.approx(expected)
    assert all(isinstance(x, float) for x in got)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no numbers here",
        "<answer></answer>",
        "<answer>12.5</answer>",  # one time
        "<answer>12.5 -</answer>",
        "<answer>about 12.5 or maybe 13 or 14</answer>",  # three times, no span
        "<answer>-5 - 10</answer>",  # negative
        "<answer>50% - 60%</answer>",
        "<answer>1:75 - 2:00</answer>",  # 75 seconds is not a clock field
        "<answer>1:10:75 - 1:11:00</answer>",
        "<answer>01:60:00 - 02:00:00</answer>",  # minutes >= 60 in HH:MM:SS
        "<think>it is 3 - 5</think>",  # only reasoning
        "<think>it is 3 - 5",  # unclosed reasoning
        "<answer>start to end</answer>",
        "the answer is 12.5",
    ],
)
def test_parse_answer_rejects(text):
    assert parse_answer(text) is None


def test_parse_answer_none_and_answer_text():
    assert parse_answer(None) is None  # type: ignore[arg-type]
    assert answer_text("<think>a 1 - 2</think> rest").strip() == "rest"
    assert answer_text("x <answer> 1 </answer> y <answer> 2 </answer>") == " 2 "


def test_parse_time():
    assert parse_time("12.5") == 12.5
    assert parse_time("1:02") == 62.0
    assert parse_time("1:02:03.5") == 3723.5
    assert parse_time("1:60") is None
    assert parse_time("1:2:3:4") is None
    assert parse_time("1.5:00") is None
    assert parse_time("x") is None


@pytest.mark.parametrize(
    "text, ok",
    [
        ("<think>reason</think><answer>1 - 2</answer>", True),
        ("  <think>\nreason\n</think>\n<answer> 1 - 2 </answer>\n", True),
        ("<think></think><answer>x</answer>", True),  # empty reasoning allowed
        ("<think>r</think><answer>  </answer>", False),  # blank answer
        ("<answer>1 - 2</answer>", False),
        ("<think>r</think>", False),
        ("<answer>1 - 2</answer><think>r</think>", False),
        ("<think>r</think><answer>1 - 2</answer> trailing", False),
        ("prefix <think>r</think><answer>1 - 2</answer>", False),
        ("<think>r</think><answer>1</answer><answer>2</answer>", False),
        ("<think>a<think>b</think><answer>1 - 2</answer>", False),
        ("", False),
    ],
)
def test_format_ok(text, ok):
    assert format_ok(text) is ok


OPTIONS = ["red car", "car", "blue bike", "a dog"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("B", 1),
        ("b", 1),
        ("(B)", 1),
        ("[C]", 2),
        ("B.", 1),
        ("B)", 1),
        ("B:", 1),
        ("**D**", 3),
        (" 'A' ", 0),
        ("B. car", 1),
        ("(C) blue bike", 2),
        ("c) blue bike", 2),
        ("Answer: B", 1),
        ("answer: b", 1),
        ("The answer is B) car", 1),
        ("The answer is B because of the car.", 1),
        ("The correct option is (c).", 2),
        ("The best answer is: D", 3),
        ("The answer is A.", 0),
        ("The answer is option C", 2),
        ("Option B is wrong, so the answer is C.", 2),  # the last phrase wins
        ("I watched it closely.\nD", 3),  # last line is a letter
        ("<think>maybe A</think><answer>C</answer>", 2),
        ("<think>B looks right</think>\nAnswer: D", 3),
        # option text fallback
        ("blue bike", 2),
        ("Blue bike!", 2),
        ("the answer is a red car", 0),  # "a" is an article; "red car" beats "car"
        ("It is a dog.", 3),
    ],
)
def test_parse_choice_accepts(text, expected):
    assert parse_choice(text, 4, OPTIONS) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "E",  # out of range for 4 options
        "Answer: F",
        "A man is walking",  # English, not option A
        "The answer is A person on a bike",
        "e.g. nothing useful",
        "I do not know",
        "a car or a bike",  # no option's text occurs in it
    ],
)
def test_parse_choice_rejects(text):
    assert parse_choice(text, 4, ["red car", "green car", "blue bike", "a dog"]) is None


def test_parse_choice_without_options_and_bounds():
    assert parse_choice("blue bike", 4) is None  # no option texts to match
    assert parse_choice("E", 5) == 4
    assert parse_choice("A", 1) == 0
    with pytest.raises(ValueError):
        parse_choice("A", 0)
    with pytest.raises(ValueError):
        parse_choice("A", 27)


def test_parse_choice_option_text_ties_are_none():
    assert parse_choice("the cat and the dog", 2, ["cat", "dog"]) is None
    assert parse_choice("apples", 2, ["A. Apples.", "B. Pears."]) == 0  # lettered options
