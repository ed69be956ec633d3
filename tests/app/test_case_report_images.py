"""The case report of an image model embeds the case's image and its occlusion map."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Callable

import numpy as np
from PIL import Image
from streamlit.testing.v1 import AppTest

from medimg_core.reporting import review
from medimg_core.reporting.figures.images import to_uint8
from medimg_core.ui import case_reports, explaining, images, state
from tests.app.test_images_pages import image_zip, images_data_page, walk_to_model


def test_an_image_models_report_embeds_the_image_and_its_occlusion_map(
    open_app: Callable[..., AppTest],
) -> None:
    at = walk_to_model(images_data_page(open_app, image_zip(), "study.zip"))
    active = at.session_state[state.ACTIVE]
    assert active.images is not None and active.test is not None and active.cases is not None
    id_column = active.model.roles.id if active.model.roles.id in active.cases else None
    table = review.review_table(active.test, active.cases, id_column=id_column)
    row_key = table.index[0]
    view = explaining.case_view(active, row_key, 1, review_table=table)
    page = case_reports.case_report(active, view, "note", active.model.threshold)

    found = images.case_image(active, row_key)
    assert found is not None
    expected = to_uint8(images.display_pixels(found.image_set, found.position))
    [uri] = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri))))
    assert np.array_equal(shown, expected)
    assert "The image</h2>" in page
    assert "not a lesion segmentation" in page  # the occlusion map's caption
    assert "Computed at 16×16 px" in page
    if "could not be drawn as pictures" not in page:
        # The occlusion map, the gauge and the waterfall, drawn as pictures.
        assert page.count("data:image/svg+xml;base64,") == 3
    assert "plotly.js" not in page
    assert len(page.encode()) < 300_000
    # No file names of the images (they may hold patient names).
    files = found.image_set.records["file"].astype(str)
    assert len(files) and not any(name in page for name in files)
