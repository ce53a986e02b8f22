from __future__ import annotations

import time as time_module
from datetime import time
from pathlib import Path
from typing import get_args

import pytest

from pipeline.cli.main import main as patrol
from pipeline.config import (
    BinOverflowRule,
    CameraConfig,
    ConfigError,
    IllegalParkingRule,
    NonmotorParkingRule,
    StallEncroachmentRule,
    TimeWindow,
    load_camera,
    load_cameras,
)
from pipeline.evidence import load_event_codes
from pipeline.types import Role
from pipeline.vocabulary import ViolationKind

EXAMPLE = Path(__file__).resolve().parents[1] / "streams" / "examples" / "shuangshan-001.yaml"

VALID = """\
id: cam-1
name: 测试 camera
url: videos/cam1.mp4
location: {lat: 36.7, lon: 117.5}
zones:
  - id: lot
    polygon: [[0.1, 0.5], [0.6, 0.5], [0.6, 0.9], [0.1, 0.9]]
    rules: [{type: illegal_parking, dwell_s: 60}]
"""


def write(folder: Path, text: str, name: str = "cam.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_example_file_loads_with_per_type_defaults() -> None:
    camera = load_camera(EXAMPLE)

    assert camera.id == "shuangshan-001"
    assert camera.location.grid_code == "370181001001001"
    parking, stall, garbage = (zone.rules[0] for zone in camera.zones)
    assert isinstance(parking, IllegalParkingRule) and parking.dwell_s == 60
    assert parking.roles == [Role.VEHICLE] and parking.containment == "bottom_center"
    assert isinstance(stall, StallEncroachmentRule)
    assert stall.containment == "overlap" and stall.min_overlap == 0.5
    assert not stall.active_at(time(23, 0)) and stall.active_at(time(6, 0))
    assert set(garbage.roles) == {Role.OVERFLOWING_BIN, Role.GARBAGE_PILE}


def test_relative_video_path_resolves_against_the_camera_file(tmp_path: Path) -> None:
    (tmp_path / "streams").mkdir()
    camera = load_camera(write(tmp_path / "streams", VALID))

    assert camera.url == str(tmp_path / "streams" / "videos" / "cam1.mp4")
    assert load_camera(EXAMPLE).url == "rtsp://127.0.0.1:8554/cam1"


def test_zone_polygon_in_pixels() -> None:
    zone = load_camera(EXAMPLE).zones[0]

    assert zone.polygon_px((1920, 1080)).tolist() == [[192, 594], [1152, 594], [1152, 1026], [192, 1026]]


@pytest.mark.parametrize(
    ("old", "new", "field", "reason"),
    [
        ("url: videos/cam1.mp4\n", "", "url", "Field required"),
        ("dwell_s: 60", "dwell_s: 0", "zones[0].rules[0].dwell_s", "greater than 0"),
        ("dwell_s: 60", "dwell_s: a minute", "zones[0].rules[0].dwell_s", "valid number"),
        ("dwell_s: 60", "dwell_s: 60, dwel_s: 60", "zones[0].rules[0].dwel_s", "unknown key"),
        ("name:", "nmae:", "nmae", "unknown key"),
        ("type: illegal_parking", "type: parking", "zones[0].rules[0]", "illegal_parking"),
        ("[0.6, 0.9], ", "[640, 0.9], ", "zones[0].polygon[2][0]", "less than or equal to 1"),
        (", [0.6, 0.9], [0.1, 0.9]", "", "zones[0].polygon", "at least 3"),
        ("[0.6, 0.9], [0.1, 0.9]", "[0.3, 0.5]", "zones[0].polygon", "no area"),
        ("id: cam-1", "id: Cam 1", "id", "pattern"),
        ("lat: 36.7", "lat: 136.7", "location.lat", "less than or equal to 90"),
        ("dwell_s: 60", 'dwell_s: 60, hours: ["22:00-25:00"]', "zones[0].rules[0].hours[0]", "25:00"),
        ("dwell_s: 60", "dwell_s: 60, cooldown_s: 1", "zones[0].rules[0]", "cooldown_s"),
        ("location:", "timezone: Beijing\nlocation:", "timezone", "unknown time zone"),
        ("location:", "ingest: {read_timeout_s: 0}\nlocation:", "ingest.read_timeout_s", "greater than 0"),
        ("location:", "ingest: {stall_after_s: soon}\nlocation:", "ingest.stall_after_s", "valid number"),
        ("location:", "ingest: {reconect_max_s: 5}\nlocation:", "ingest.reconect_max_s", "unknown key"),
        ("location:", "ingest: {reconnect_min_s: 60}\nlocation:", "ingest",
         "reconnect_min_s (60) is more than reconnect_max_s (30)"),
        ("illegal_parking, dwell_s: 60", "nonmotor_parking, dwell_s: 60, min_count: 0", "zones[0].rules[0].min_count",
         "greater than or equal to 1"),
        # Numbers that parse but cannot mean anything.
        ("dwell_s: 60", "dwell_s: .inf", "zones[0].rules[0].dwell_s", "finite number"),
        ("dwell_s: 60", "dwell_s: 1.0e+308", "zones[0].rules[0].dwell_s", "less than or equal to 604800"),
        ("dwell_s: 60", "dwell_s: 1e308", "zones[0].rules[0].dwell_s", "valid number"),  # YAML 1.1: a string
        ("dwell_s: 60", "dwell_s: yes", "zones[0].rules[0].dwell_s", "valid number"),
        ("dwell_s: 60", "dwell_s: 60, cooldown_s: .inf", "zones[0].rules[0].cooldown_s", "finite number"),
        ("dwell_s: 60", "dwell_s: 60, cooldown_s: 1.0e+308", "zones[0].rules[0].cooldown_s", "less than or equal"),
        ("location:", "ingest: {offline_fault_after_s: .nan}\nlocation:", "ingest.offline_fault_after_s",
         "finite number"),
        ("[0.6, 0.9], ", "[true, 0.9], ", "zones[0].polygon[2][0]", "valid number"),
        ("[0.6, 0.9], ", '["0.6", 0.9], ', "zones[0].polygon[2][0]", "valid number"),
        ("lat: 36.7", 'lat: "36.7"', "location.lat", "valid number"),
        ("lon: 117.5", "lon: yes", "location.lon", "valid number"),
        ("lat: 36.7", "lat: .nan", "location.lat", "finite number"),
        # Outlines without a clear inside.
        ("[[0.1, 0.5], [0.6, 0.5], [0.6, 0.9], [0.1, 0.9]]", "[[0.1, 0.5], [0.6, 0.9], [0.6, 0.5], [0.1, 0.7]]",
         "zones[0].polygon", "edges 0 and 2 cross or touch"),
        ("[0.6, 0.9], [0.1, 0.9]", "[0.6, 0.9], [0.35, 0.5], [0.1, 0.9]", "zones[0].polygon",
         "edges 0 and 2 cross or touch"),  # corner 3 lies on edge 0
        ("[0.1, 0.9]]", "[0.1, 0.9], [0.6, 0.5]]", "zones[0].polygon", "corners 1 and 4 are the same point"),
        ("[0.1, 0.9]]", "[0.1, 0.9], [0.1, 0.5]]", "zones[0].polygon", "the last corner repeats the first"),
        # Text far longer than any name.
        ("name: 测试 camera", "name: " + "x" * 201, "name", "at most 200 characters"),
        ("lon: 117.5", "lon: 117.5, address: " + "x" * 201, "location.address", "at most 200 characters"),
        ("url: videos/cam1.mp4", "url: rtsp://cam/" + "x" * 2048, "url", "at most 2048 characters"),
        # Rules watching what they cannot judge.
        ("dwell_s: 60", "dwell_s: 60, roles: [vehicle, person]", "zones[0].rules[0].roles",
         "cannot watch person; it watches only vehicle"),
        ("illegal_parking, dwell_s: 60", "nonmotor_parking, dwell_s: 60, roles: [vehicle]", "zones[0].rules[0].roles",
         "cannot watch vehicle; it watches only non_motor_vehicle"),
        ("illegal_parking, dwell_s: 60", "bin_overflow, dwell_s: 60, roles: [bin]", "zones[0].rules[0].roles",
         "cannot watch bin; it watches only overflowing_bin, garbage_pile"),
    ],
)
def test_malformed_file_names_file_and_field(
    tmp_path: Path, old: str, new: str, field: str, reason: str
) -> None:
    assert old in VALID
    path = write(tmp_path, VALID.replace(old, new, 1))

    with pytest.raises(ConfigError) as error:
        load_camera(path)

    assert str(path) in str(error.value)
    assert f"{field}: " in str(error.value)
    assert reason in str(error.value)


def test_a_rule_may_narrow_its_roles_and_each_kind_watches_its_own_role(tmp_path: Path) -> None:
    text = VALID.replace("illegal_parking, dwell_s: 60", "bin_overflow, dwell_s: 60, roles: [garbage_pile]")
    assert load_camera(write(tmp_path, text)).zones[0].rules[0].roles == [Role.GARBAGE_PILE]

    for model in (IllegalParkingRule, StallEncroachmentRule, BinOverflowRule, NonmotorParkingRule):
        kind = ViolationKind(get_args(model.model_fields["type"].annotation)[0])
        assert kind.role in model.model_fields["roles"].default


def test_a_long_value_is_not_echoed_whole(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("name: 测试 camera", "name: " + "x" * 200_000))

    with pytest.raises(ConfigError, match=r"name: String should have at most 200 characters") as error:
        load_camera(path)

    assert len(str(error.value)) < 300


def test_a_file_over_the_size_cap_is_refused_before_parsing(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + "# padding\n" * 200_000)  # 2 MB of comments: valid YAML, read for seconds

    started = time_module.monotonic()
    with pytest.raises(ConfigError, match=r"cam\.yaml: larger than 256 KiB; a camera file is a few KiB"):
        load_camera(path)
    assert time_module.monotonic() - started < 0.5


def test_yaml_nested_too_deeply_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("name: 测试 camera", "name: " + "[" * 10_000 + "]" * 10_000))

    with pytest.raises(ConfigError, match=r"cam\.yaml: YAML nested too deeply"):
        load_camera(path)


def test_bike_rule_defaults_to_non_motor_vehicles_standing_in_the_zone(tmp_path: Path) -> None:
    text = VALID.replace("illegal_parking, dwell_s: 60", "nonmotor_parking, dwell_s: 600, min_count: 5")

    (rule,) = load_camera(write(tmp_path, text)).zones[0].rules

    assert isinstance(rule, NonmotorParkingRule) and rule.quorum == 5
    assert rule.roles == [Role.NON_MOTOR_VEHICLE] and rule.containment == "bottom_center"


def test_a_zone_chooses_an_entry_of_the_event_code_table(tmp_path: Path) -> None:
    text = VALID.replace("illegal_parking, dwell_s: 60", "stall_encroachment, dwell_s: 60, event: shop_spillover")

    (rule,) = load_camera(write(tmp_path, text), event_entries=load_event_codes().codes).zones[0].rules

    assert rule.event == "shop_spillover"


def test_an_event_the_table_lacks_fails_at_load_naming_file_and_field(tmp_path: Path) -> None:
    text = VALID.replace("illegal_parking, dwell_s: 60", "stall_encroachment, dwell_s: 60, event: shop_spilover")
    path = write(tmp_path, text)

    with pytest.raises(ConfigError) as error:
        load_camera(path, event_entries=load_event_codes().codes)

    assert str(path) in str(error.value)
    assert "zones[0].rules[0].event: 'shop_spilover' is not an entry of the event code table" in str(error.value)
    assert "shop_spillover" in str(error.value)  # the entries are listed, so the typo shows


def test_replay_checks_the_camera_file_against_the_event_codes_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a district table without the shop_spillover entry the camera file names
    district = 'events:\n  stall_encroachment: {code: "0501", name: 无照经营游商, category: 街面秩序}\n'
    table = write(tmp_path, district, "district_codes.yaml")
    text = VALID.replace("illegal_parking, dwell_s: 60", "stall_encroachment, dwell_s: 60, event: shop_spillover")
    camera = write(tmp_path, text)

    status = patrol(["replay", "street.mp4", "--camera", str(camera), "--out", str(tmp_path / "out"),
                     "--event-codes", str(table)])

    assert status == 2
    assert f"{camera}: invalid camera file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_ingest_settings_default_and_override(tmp_path: Path) -> None:
    assert load_camera(write(tmp_path, VALID)).ingest.model_dump() == {
        "open_timeout_s": 10.0, "read_timeout_s": 10.0, "stall_after_s": 10.0,
        "reconnect_min_s": 0.5, "reconnect_max_s": 30.0, "offline_fault_after_s": 300.0,
    }
    text = VALID.replace("location:", "ingest: {stall_after_s: 5, reconnect_max_s: 60}\nlocation:")
    ingest = load_camera(write(tmp_path, text)).ingest
    assert (ingest.stall_after_s, ingest.reconnect_max_s, ingest.read_timeout_s) == (5.0, 60.0, 10.0)


def test_duplicate_zone_id_is_rejected(tmp_path: Path) -> None:
    zone = VALID[VALID.index("  - id: lot") :]
    path = write(tmp_path, VALID + zone)

    with pytest.raises(ConfigError, match=r"zones: duplicate zone id 'lot' \(zones\[0\] and zones\[1\]\)"):
        load_camera(path)


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ("name: 测试 camera", "name: [测试", ":3:"),  # unclosed flow sequence
        ("name: 测试 camera", "name: a\nname: b", ":3:1: YAML syntax error: duplicate key 'name'"),
    ],
)
def test_yaml_error_names_file_and_line(tmp_path: Path, old: str, new: str, where: str) -> None:
    path = write(tmp_path, VALID.replace(old, new))

    with pytest.raises(ConfigError, match="YAML syntax error") as error:
        load_camera(path)

    assert f"{path}{where}" in str(error.value)


def test_load_cameras_reads_a_folder_and_rejects_a_reused_camera_id(tmp_path: Path) -> None:
    write(tmp_path, VALID, "a.yaml")
    write(tmp_path, VALID.replace("id: cam-1", "id: cam-2"), "b.yaml")
    assert [camera.id for camera in load_cameras(tmp_path)] == ["cam-1", "cam-2"]

    write(tmp_path, VALID, "c.yaml")
    with pytest.raises(ConfigError, match=r"c\.yaml: id: camera id 'cam-1' is also used by .*a\.yaml"):
        load_cameras(tmp_path)


def test_time_window_wrapping_midnight() -> None:
    night = TimeWindow.parse("22:00-02:00")

    assert night.contains(time(23, 30)) and night.contains(time(1, 59, 59))
    assert not night.contains(time(2, 0)) and not night.contains(time(12, 0))
    assert str(night) == "22:00-02:00"


def test_every_schema_field_is_documented() -> None:
    schema = CameraConfig.model_json_schema()
    models = [schema, *schema["$defs"].values()]

    undocumented = [
        f"{model.get('title')}.{name}"
        for model in models
        for name, field in model.get("properties", {}).items()
        if not field.get("description")
    ]
    assert undocumented == []
