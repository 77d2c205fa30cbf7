"""RTP time to wall-clock time: alignment by sender reports, holding, fallback."""

from __future__ import annotations

import pytest

from bodycam.media.tap import EncodedFrame, RtpUnwrapper
from bodycam.media.timeline import Timeline

T0 = 1_800_000_000.0  # sender capture time of the first frames
V0, A0 = 3_000_000_000, 123_456  # random RTP origins


def video(i: int, arrival_delay: float = 0.035) -> EncodedFrame:
    """Frame i at 30 fps, complete at the gateway one frame later (jitter buffer)."""
    capture = T0 + i / 30
    return EncodedFrame("video", "H264", b"", V0 + i * 3000, 90000, i == 0, capture + arrival_delay)


def audio(i: int, arrival_delay: float = 0.100) -> EncodedFrame:
    """Opus frame i (20 ms), out of aiortc's jitter buffer about four frames later."""
    capture = T0 + i * 0.02
    return EncodedFrame("audio", "opus", b"", A0 + i * 960, 48000, True, capture + arrival_delay)


def test_reports_align_audio_and_video_despite_different_buffering() -> None:
    timeline = Timeline({"video", "audio"}, wait=3.0)
    out = timeline.stamp(video(0)) + timeline.stamp(audio(0))
    assert out == []  # held: no sender report yet
    timeline.on_sender_report("video", T0 + 10 / 30, V0 + 10 * 3000)
    assert timeline.stamp(video(1)) == []  # still waiting for audio's report
    timeline.on_sender_report("audio", T0 + 0.5, A0 + 25 * 960)
    released = timeline.stamp(audio(1))
    assert len(released) == 4
    walls = {(f.kind, f.rtp_time): f.wall for f in released}
    # video 0 and audio 0 were captured at the same instant: same wall time.
    assert walls[("video", V0)] == pytest.approx(walls[("audio", A0)], abs=1e-6)
    # the offset is the fastest transit seen: video's 35 ms.
    assert walls[("video", V0)] == pytest.approx(T0 + 0.035, abs=1e-6)
    later = timeline.stamp(audio(50))[0]
    assert later.wall == pytest.approx(T0 + 1.0 + 0.035, abs=1e-6)
    assert timeline.aligned_by_reports


def test_without_reports_frames_are_released_on_arrival_time_after_the_wait() -> None:
    timeline = Timeline({"video", "audio"}, wait=1.0)
    for i in range(30):
        assert timeline.stamp(video(i)) == []
    released = timeline.stamp(video(30))  # 1 s after the first arrival
    assert len(released) == 31
    assert released[0].wall == pytest.approx(T0 + 0.035)
    assert released[30].wall == pytest.approx(T0 + 1.0 + 0.035)
    assert not timeline.aligned_by_reports
    # the audio stream, without a report either, is anchored on its own first arrival
    first_audio = timeline.stamp(audio(0))[0]
    assert first_audio.wall == pytest.approx(T0 + 0.1)


def test_flush_releases_what_is_held() -> None:
    timeline = Timeline({"video"}, wait=5.0)
    timeline.stamp(video(0))
    timeline.stamp(video(1))
    assert [f.rtp_time for f in timeline.flush()] == [V0, V0 + 3000]


def test_report_timestamp_unwrapped_across_32_bit_wrap() -> None:
    timeline = Timeline({"video"}, wait=5.0)
    unwrapper = RtpUnwrapper()
    base = 0xFFFFFFFF - 1500  # the stream wraps between frame 0 and frame 1
    stamps = [unwrapper.map((base + i * 3000) & 0xFFFFFFFF) for i in range(3)]
    assert stamps == [base, base + 3000, base + 6000]
    frames = [
        EncodedFrame("video", "VP8", b"", s, 90000, True, T0 + i / 30 + 0.01)
        for i, s in enumerate(stamps)
    ]
    timeline.stamp(frames[0])
    timeline.stamp(frames[1])
    # the report carries a 32-bit timestamp from after the wrap
    timeline.on_sender_report("video", T0 + 1 / 30, (base + 3000) & 0xFFFFFFFF)
    released = timeline.stamp(frames[2])
    assert [f.wall for f in released] == pytest.approx([T0 + i / 30 + 0.01 for i in range(3)])


def test_late_reports_are_ignored_and_drift_is_followed() -> None:
    timeline = Timeline({"video"}, wait=5.0)
    timeline.stamp(video(0))
    timeline.on_sender_report("video", T0, V0)
    timeline.stamp(video(1))
    timeline.on_sender_report("video", T0 + 1 + 0.060, V0 + 90000)  # sent 60 ms late: ignored
    assert timeline.stamp(video(30))[0].wall == pytest.approx(T0 + 1 + 0.035)
    # the sender's clock really moved on by 50 ms: followed once the window holds no older report
    for k in range(2, 2 + 8):
        timeline.on_sender_report("video", T0 + k + 0.050, V0 + k * 90000)
    assert timeline.stamp(video(300))[0].wall == pytest.approx(T0 + 10 + 0.050 + 0.035)
    # an earlier report than the mapping (the mapping itself was late) is taken at once
    timeline.on_sender_report("video", T0 + 11 + 0.020, V0 + 11 * 90000)
    assert timeline.stamp(video(360))[0].wall == pytest.approx(T0 + 12 + 0.020 + 0.035)


def test_a_reanchor_never_reorders_a_stream() -> None:
    timeline = Timeline({"video"}, wait=5.0)
    timeline.stamp(video(0))
    timeline.on_sender_report("video", T0 + 0.1, V0)  # a mapping 100 ms too late...
    first = timeline.stamp(video(1))
    timeline.on_sender_report("video", T0, V0)  # ...corrected: times step back 100 ms
    second = timeline.stamp(video(2))[0]
    assert second.wall > first[-1].wall


def test_transit_is_reported_for_video() -> None:
    seen: list[float] = []
    timeline = Timeline({"video"}, wait=5.0, on_transit=seen.append)
    timeline.stamp(video(0))
    timeline.on_sender_report("video", T0, V0)
    timeline.stamp(video(1, arrival_delay=0.050))
    assert seen == pytest.approx([0.035, 0.050], abs=1e-6)
