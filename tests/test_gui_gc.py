"""Cyclic garbage is collected on the GUI thread while worker threads live (explorer/ui/gui_gc.py)."""
import gc

from explorer.ui.gui_gc import _GuiCollector, collect_due


def test_workers_turn_automatic_collection_off_and_the_last_one_back_on(qapp):
    """The last release restores what the first acquire found (off when another collector holds it)."""
    before = gc.isenabled()
    collector = _GuiCollector()
    collector.acquire()
    collector.acquire()
    assert not gc.isenabled() and collector.timer.isActive()
    collector.release()
    assert not gc.isenabled()  # one worker thread still lives
    collector.release()
    assert gc.isenabled() == before and not collector.timer.isActive()
    collector.release()  # an extra release changes nothing
    assert gc.isenabled() == before


def test_the_timer_collects_what_passed_the_threshold(qapp):
    class Node:
        pass

    collector = _GuiCollector()
    collector.acquire()
    try:
        for _ in range(gc.get_threshold()[0] + 10):
            a, b = Node(), Node()
            a.b, b.a = b, a  # cycles: only the collector frees them
        assert gc.get_count()[0] > gc.get_threshold()[0]
        collect_due()
        assert gc.get_count()[0] < gc.get_threshold()[0]
    finally:
        collector.release()
