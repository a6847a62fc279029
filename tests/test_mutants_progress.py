"""The progress line's figures, worked out by hand from its rules (share, speed, ETA, units, cut labels)."""

import io

import pytest

from vitrust._progress import Progress, _count, _duration, _fit


@pytest.mark.parametrize("n, text", [
    (0, "0"), (999, "999"), (1000, "1.0k"), (1500, "1.5k"), (999_949, "999.9k"),
    (1_000_000, "1.0M"), (2_500_000, "2.5M"), (999_000_000, "999.0M"), (1_000_000_000, "1.0G"), (12_340_000_000, "12.3G"),
])
def test_count_units(n, text):
    assert _count(n) == text


@pytest.mark.parametrize("s, text", [
    (None, "--"), (0, "0s"), (0.4, "0s"), (59.4, "59s"), (59.6, "1m00s"), (60, "1m00s"), (61, "1m01s"),
    (3599, "59m59s"), (3600, "1h00m"), (3661, "1h01m"), (3720, "1h02m"), (7325, "2h02m"),
])
def test_duration_text(s, text):
    assert _duration(s) == text


def test_fit_keeps_the_end():
    assert _fit("abcdef", 6) == "abcdef"
    assert _fit("abcdef", 10) == "abcdef"
    assert _fit("abcdef", 4) == "…def"
    assert _fit("abcdef", 2) == "…f"
    assert _fit("abcdef", 1) == ""
    assert _fit("abcdef", 0) == ""
    assert _fit("a", 1) == "a"


def quiet(n_items, n_weights, t0=100.0, **kw):
    p = Progress(n_items, n_weights, stream=io.StringIO(), enabled=False, **kw)
    p.t0 = t0
    return p


def test_line_after_one_item():
    p = quiet(4, 1000)
    p.items, p.weights = 1, 250
    # 25 % done in 10 s: 25 weights/s, 750 left: 30 s
    assert p.line("x", now=110.0) == "[####............]  25% 1/4 250/1.0k 25/s ETA 30s x"


def test_line_counts_the_tensor_in_progress_by_its_time():
    p = quiet(4, 1000)
    p.items, p.weights = 1, 250
    p._current = ("big", 500, 110.0)  # started after 10 s at 25 weights/s
    # 4 s into a 500-weight tensor at 25/s: 100 weights, 350 in all over 14 s: 25/s, 650 left: 26 s
    assert p.line(now=114.0) == "[#####...........]  35% 1/4 350/1.0k 25/s ETA 26s big"
    # long after: capped at 95 % of the tensor, 250 + 475 = 725 over 100 s
    assert p.line(now=200.0) == "[###########.....]  72% 1/4 725/1.0k 7/s ETA 38s big"


def test_line_with_nothing_done_yet():
    p = quiet(3, 10)
    p._current = ("t", 4, 100.0)
    # no finished weights: no speed to go by, the tensor in progress counts nothing
    assert p.line(now=105.0) == "[................]   0% 0/3 0/10 0/s ETA -- t"
    assert p.line(now=100.0) == "[................]   0% 0/3 0/10 0/s ETA -- t"
    p._current = None
    assert p.line(now=105.0) == "[................]   0% 0/3 0/10 0/s ETA -- "


def test_line_when_everything_is_done():
    p = quiet(2, 2000)
    p.items, p.weights = 2, 2000
    assert p.line("", now=104.0) == "[################] 100% 2/2 2.0k/2.0k 500/s ETA 0s "
    p.weights = 2600  # more than announced: the bar stays full
    assert p.line("", now=104.0).startswith("[################] 100% 2/2 2.6k/2.0k 650/s ETA ")


def test_line_cut_to_its_width():
    p = quiet(4, 1000, width=60)
    p.items, p.weights = 1, 250
    head = "[####............]  25% 1/4 250/1.0k 25/s ETA 30s "
    line = p.line("layers.0.attention.query_key_value.weight", now=110.0)
    assert len(line) == 60
    assert line == head + "…" + "layers.0.attention.query_key_value.weight"[-(60 - len(head) - 1):]
    narrow = quiet(4, 1000, width=10)
    narrow.items, narrow.weights = 1, 250
    assert narrow.line("a", now=110.0) == head  # no room at all: not even a one-letter label


def test_zero_weights_announced_counts_as_one():
    p = quiet(1, 0)
    assert p.n_weights == 1
    p.items, p.weights = 1, 1
    assert p.line("z", now=101.0) == "[################] 100% 1/1 1/1 1/s ETA 0s z"


def test_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    p = Progress(2, 30, stream=out)
    assert not p.tty
    p("start", "a", 10)
    assert p._current[:2] == ("a", 10)
    p("done", "a", 10)
    assert p._current is None and p.items == 1 and p.weights == 10
    p.advance("b", 20)
    p.note("hello")
    p.close()
    assert out.getvalue() == "[1/2] a\n[2/2] b\nhello\n"


def test_disabled_prints_only_notes():
    out = io.StringIO()
    p = Progress(2, 30, stream=out, enabled=False)
    p.start("a", 10)
    p.advance("a", 10)
    p.note("warned")
    p.close()
    assert out.getvalue() == "warned\n"
    assert p.items == 1 and p.weights == 10


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_terminal_redraws_in_place():
    out = Tty()
    p = Progress(2, 100, stream=out, width=70)
    assert p.tty and p._ticker is not None
    p.start("first", 50)
    p.advance("first", 50)
    p.note("msg")
    p.close()
    assert not p._ticker.is_alive()
    text = out.getvalue()
    assert text.endswith("\n")
    frames = text.split("\r")[1:]
    assert frames, text
    last = frames[-1]
    assert last.startswith("[########........]  50% 1/2 50/100 ")
    assert "first" in last and "\nmsg\n" in last
    for f in frames[:-1]:
        assert len(f) == 70
    assert frames[-1].split("\n")[0] == frames[-1].split("\n")[0].ljust(70)


def test_tensor_in_progress_within_the_first_second():
    p = quiet(2, 100)
    p.items, p.weights = 1, 10
    p._current = ("s", 1, 100.5)  # 10 weights in 0.5 s: 20/s; 0.02 s of a one-weight tensor: 0.4 of it
    # 10.4 done over 0.52 s: 20/s, 89.6 left: 4 s
    assert p.line(now=100.52) == "[#...............]  10% 1/2 10/100 20/s ETA 4s s"


def test_tensor_in_progress_after_a_single_weight():
    p = quiet(2, 10)
    p.items, p.weights = 1, 1
    p._current = ("t", 1, 101.0)  # one weight in 1 s; half a second into a one-weight tensor
    assert p.line(now=101.5) == "[##..............]  15% 1/2 1/10 1/s ETA 8s t"


class Flushes(io.StringIO):
    flushes = 0

    def flush(self):
        self.flushes += 1
        super().flush()


def test_note_and_plain_lines_are_flushed():
    out = Flushes()
    p = Progress(1, 1, stream=out)
    p.note("n")
    assert out.flushes == 1
    p.advance("a", 1)
    assert out.flushes == 2
