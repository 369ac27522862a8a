"""strun parameter files written for the installed jwst load back with the intended settings."""

import asdf
import pytest

from ceers_nircam import pipeline


def _defaults(step_class):
    return step_class().get_pars()


def _changed(pars, defaults):
    return {k: v for k, v in pars.items() if k != "steps" and defaults.get(k) != v}


@pytest.mark.parametrize("settings", [pipeline.IMAGE2, pipeline.IMAGE3_PART1], ids=lambda s: s.name)
def test_parameter_file_round_trips_through_the_installed_jwst(tmp_path, settings):
    path = pipeline.write_parameter_file(settings, str(tmp_path / f"{settings.name}.asdf"))
    loaded = pipeline.load_parameter_file(path)
    assert type(loaded).__name__ == settings.pipeline.rsplit(".", 1)[1]
    intended = settings.step_parameters()
    for name, step in loaded.step_defs.items():
        got = getattr(loaded, name).get_pars()
        want = intended.get(name, {})
        assert {k: got[k] for k in want} == want, name
        # Every other step parameter is the installed default.
        assert set(_changed(got, _defaults(step))) <= set(want), name
    with asdf.open(path) as af:  # a plain strun parameter file: class, name, parameters, steps
        assert af["class"] == settings.pipeline.replace("jwst.pipeline.", "jwst.pipeline.calwebb_" +
                                                        ("image2." if "Image2" in settings.pipeline
                                                         else "image3."))
        assert {s["name"] for s in af["steps"]} == set(loaded.step_defs)


def test_image2_skips_resample_only():
    loaded = pipeline.IMAGE2.step_parameters()
    assert loaded == {"resample": {"skip": True}}


def test_image3_part1_settings():
    pars = pipeline.IMAGE3_PART1.step_parameters()
    assert pars["skymatch"] == {"skymethod": "local", "skystat": "mode", "subtract": False}
    assert pars["outlier_detection"] == {}  # the pipeline's defaults
    assert all(pars[s] == {"skip": True} for s in ("tweakreg", "resample", "source_catalog"))


def test_parameter_file_given_by_the_user_is_used_as_it_is(tmp_path):
    path = tmp_path / "mine.asdf"
    path.write_text("not even asdf")
    assert pipeline.ensure_parameter_file(pipeline.IMAGE2, str(path)) == str(path)
    with pytest.raises(pipeline.CeersError, match="no such parameter file"):
        pipeline.ensure_parameter_file(pipeline.IMAGE2, str(tmp_path / "none.asdf"))
    with pytest.raises(pipeline.CeersError, match="not a usable parameter file"):
        pipeline.load_parameter_file(str(path))


def test_default_file_name_carries_the_jwst_version(tmp_path):
    import jwst

    path = pipeline.ensure_parameter_file(pipeline.IMAGE2, None, str(tmp_path))
    assert path == str(tmp_path / f"image2_{jwst.__version__}.asdf")
