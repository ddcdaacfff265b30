from textkit import core, extra


def test_reverse():
    assert core.reverse("abc") == "cba"


def test_shout():
    assert core.shout("hi") == "HI!"


def test_mirror():
    assert extra.mirror("ab") == "abba"
