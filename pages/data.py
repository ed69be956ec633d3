"""Data: load a table (or the sample), join a second one if needed, confirm roles, profile."""

from __future__ import annotations

import streamlit as st

from medimg_core.access import Action
from medimg_core.errors import MedimgError
from medimg_core.reporting.figures.data import class_balance_figure
from medimg_core.tables.integration import join_tables
from medimg_core.tables.loading import SAMPLES
from medimg_core.tables.profile import column_role, hidden_columns
from medimg_core.ui import cache, images, jobs, large, state, volumes, widgets, workflow
from medimg_core.ui.auth import current_actor
from medimg_core.ui.classes import class_inputs, id_like_inputs, known_dataset, with_classes

TABLE_TYPES = ["csv", "tsv", "txt", "xlsx", "xlsm", "parquet", "pq"]
NONE = "(none)"

state.require_router()
st.title("Data")
st.caption(
    "One row per case (image, lesion or patient): a label (the diagnosis) and the features "
    "measured on it. Bring a table of features, or images, which medimg turns into named "
    "features. medimg proposes the role of each column; you confirm them."
)
jobs.where_work_runs("data")

KINDS = {"table": "A table of features", "images": "Images"}
kind = st.radio(
    "What do you have?",
    list(KINDS),
    index=1 if images.context() is not None else 0,
    format_func=KINDS.get,
    horizontal=True,
    key="data_kind",
)

if kind == "table":
    with st.container(border=True):
        upload_col, sample_col = st.columns([3, 2], gap="large")
        with upload_col:
            upload_refusal = widgets.refusal_note(current_actor(), Action.UPLOAD)
            upload = st.file_uploader(
                "Upload a table: CSV, TSV, Excel (.xlsx) or Parquet",
                type=TABLE_TYPES,
                key="upload",
                help="The file is read on this server only. Missing-value tokens (NA, ?, null, -) "
                "become missing; mostly numeric columns become numbers.",
                disabled=upload_refusal is not None,
            )
            if upload_refusal is not None:
                st.caption(upload_refusal)
        with sample_col:
            st.markdown("**No file at hand?**")
            st.caption(SAMPLES[workflow.SAMPLE_NAME])
            if st.button("Use the built-in sample", key="use_sample", icon=":material/science:"):
                workflow.use_sample("data")

    if upload is not None and st.session_state.get("data_upload_id") != upload.file_id:
        try:
            workflow.handle_upload(upload.getvalue(), upload.name)
            st.session_state["data_upload_id"] = upload.file_id
        except MedimgError as exc:
            st.error(str(exc), icon=":material/error:")
    # Tables too large to upload: only for analysts and admins, only inside the data folders.
    server_roots = large.roots() if large.may_open(current_actor()) else ()
    if server_roots:
        large.picker(server_roots)
else:
    with st.container(border=True):
        source_col, size_col = st.columns([3, 2], gap="large")
        # Only analysts and admins may read server folders (the core refuses the others too).
        roots = images.folder_roots() if images.may_open_folders(current_actor()) else ()
        source = source_col.radio(
            "Where are the images?",
            ["upload", "folder"] if roots else ["upload"],
            format_func={
                "upload": "Upload a ZIP or .npz",
                "folder": "A folder on this server",
            }.get,
            horizontal=True,
            key="images_source",
        )
        size_choice = size_col.selectbox(
            "Working size",
            images.SIZE_CHOICES,
            format_func=images.size_label,
            key="images_size",
            help="Every image is resized (plain resize, never cropped) to this size before its "
            "features are computed; the size is saved with the model so that new images are "
            "treated the same way. Automatic keeps the set's most common size, scaled down to "
            f"at most {images.MAX_AUTO_SIDE} px. Larger sizes keep finer texture and take longer.",
        )
        if source == "upload":
            images_refusal = widgets.refusal_note(current_actor(), Action.UPLOAD)
            image_upload = st.file_uploader(
                "ZIP with one sub-folder per class, or images + labels.csv; or a MedMNIST .npz; "
                "or 3D volumes (NIfTI, NRRD) with masks",
                type=images.ARCHIVE_TYPES,
                key="upload_images",
                help="ZIP: one sub-folder per class (normal/, pneumonia/, …), or the images with "
                "a labels.csv (columns file, label, optional patient_id and clinical columns). "
                "An optional masks/ folder with the same file names restricts the features to "
                "each region and adds its shape. PNG, JPEG, TIFF or DICOM (de-identified on "
                "reading). What is unpacked is stored encrypted on the server, and removed when "
                "you replace the upload or your session ends. A .npz in the MedMNIST layout "
                "keeps its own splits: its test split becomes the held-out test set. 3D: "
                "NIfTI / NRRD volumes with their segmentations under masks/ (or a manifest.csv "
                "with columns case, image, mask, label); each case gets IBSI radiomic features "
                "of its segmented region.",
                disabled=images_refusal is not None,
            )
            volumes.settings_uploader()
            if images_refusal is not None:
                st.caption(images_refusal)
            failed = st.session_state.get("data_images_failed") or (None, "")
            if image_upload is not None and image_upload.file_id == failed[0]:
                # The same rejected file is still in the uploader: say why again, without
                # unpacking it again.
                st.error(failed[1], icon=":material/error:")
            elif (
                image_upload is not None
                and st.session_state.get("data_images_upload_id") != image_upload.file_id
            ):
                try:
                    images.load_upload(image_upload.getvalue(), image_upload.name, size_choice)
                    st.session_state["data_images_upload_id"] = image_upload.file_id
                except MedimgError as exc:
                    st.session_state["data_images_failed"] = (image_upload.file_id, str(exc))
                    st.error(str(exc), icon=":material/error:")
        else:
            folder_col, go_col = st.columns([4, 1], vertical_alignment="bottom")
            folder = folder_col.text_input(
                "Folder path on the server",
                key="images_folder",
                placeholder=str(roots[0] / "chest-xrays"),
                help="For studies too large to upload: the folder is read where medimg runs, "
                "not on your computer. Same layouts as the ZIP. Only folders inside the image "
                "folders an administrator configured can be read; a path relative to one of "
                "them works too.",
            )
            st.caption(
                ":material/dns: medimg reads this folder on the server running the app (not on "
                "your computer); nothing is copied or changed. Image folders on this server: "
                + ", ".join(f"`{r}`" for r in roots)
            )
            if go_col.button(
                "Read the folder", key="images_folder_go", icon=":material/folder_open:"
            ):
                try:
                    images.load_folder(folder, size_choice, current_actor())
                except MedimgError as exc:
                    st.error(str(exc), icon=":material/error:")

    image_ctx = images.context()
    if volumes.is_volume_context(image_ctx):
        assert image_ctx is not None
        volumes.study_summary(image_ctx)
    elif image_ctx is not None:
        image_set = image_ctx.table.image_set
        features = image_ctx.table.features
        working = features.settings.get("size") or []
        sizes = image_set.sizes
        (common_h, common_w), _ = next(iter(sizes.items()))
        st.markdown(f"**{image_ctx.name}** · images read and turned into features")
        m1, m2, m3, m4 = st.columns(4)
        m1.metric(
            "Images",
            f"{len(features.frame):,}",
            help="Images whose features were extracted (unreadable ones are listed below).",
        )
        m2.metric(
            "Classes",
            f"{len(image_set.class_counts):,}",
            help=", ".join(f"{k}: {v:,}" for k, v in image_set.class_counts.items())
            or "No labels.",
        )
        m3.metric(
            "Image size" if len(sizes) == 1 else "Most common size",
            f"{common_h}×{common_w}",
            help="Height × width in pixels as stored"
            + (f"; {len(sizes)} different sizes in the set." if len(sizes) > 1 else "."),
        )
        m4.metric(
            "Features per image",
            f"{len(features.feature_names):,}",
            help="Named, documented image features: intensity, texture (co-occurrence and local "
            "binary patterns), edges and a brightness grid"
            + (f", computed at {working[0]}×{working[1]} px." if working else "."),
        )
        if "split" in features.frame.columns:
            n_test = int((features.frame["split"] == "test").sum())
            st.info(
                f"Validation: this file's own split is kept. Its **test split ({n_test:,} "
                "images)** is the held-out test set; train and val images form the development "
                "set for cross-validation.",
                icon=":material/call_split:",
            )
        widgets.notes(image_ctx.table.notes)
        if (
            working
            and size_choice != images.AUTO_SIZE
            and tuple(working) != images.working_size(image_set, size_choice)
        ):
            st.warning(
                f"The features were computed at {working[0]}×{working[1]} px, not at the size "
                "chosen above.",
                icon=":material/aspect_ratio:",
            )
            if st.button("Extract again at the chosen size", key="images_reextract"):
                images.set_image_table(
                    images.extract(image_set, images.working_size(image_set, size_choice)),
                    image_ctx.name,
                )
                st.rerun()
        problems = image_ctx.table.problems
        if problems:
            left_out = f"{len(problems):,} file{'' if len(problems) == 1 else 's'}"
            with st.expander(f"{left_out} left out, with the reason"):
                st.dataframe(
                    {"file": [p.file for p in problems], "reason": [p.reason for p in problems]},
                    hide_index=True,
                    width="stretch",
                    height=min(360, 38 + 35 * len(problems)),
                    key="images_problems",
                )
        if len(sizes) > 1:
            with st.expander(f"{len(sizes)} image sizes"):
                st.dataframe(
                    {
                        "size (height × width)": [f"{h}×{w}" for h, w in sizes],
                        "images": list(sizes.values()),
                    },
                    hide_index=True,
                    key="images_sizes",
                )
        st.markdown("**Gallery**")
        if image_set.class_counts:
            st.caption(
                "Images per class: "
                + " · ".join(f"{k} {v:,}" for k, v in image_set.class_counts.items())
            )
        images.gallery(image_set, key="gallery")
        with st.expander("What the image features mean"):
            st.dataframe(
                images.feature_descriptions_table(image_ctx.table),
                hide_index=True,
                width="stretch",
                height=320,
                key="images_feature_meanings",
                column_config={
                    "feature": st.column_config.TextColumn("Feature", width="medium"),
                    "meaning": st.column_config.TextColumn("Meaning", width="large"),
                },
            )

if not state.has(state.TABLE):
    st.info(
        "Upload a table or use the built-in sample to begin."
        if kind == "table"
        else "Upload a ZIP of images or a .npz, or read a folder on the server, to begin.",
        icon=":material/upload_file:",
    )
    st.stop()

table = state.get(state.TABLE)
frame = table.frame
proposal = state.get(state.PROPOSAL)
columns = [str(c) for c in frame.columns]
big = large.context()

if big is not None:
    summary = big.summary
    st.markdown(f"**{table.name}** · a table on this server, read where heavy work runs")
    b1, b2, b3, b4 = st.columns(4)
    b1.metric("Rows", f"{summary.n_rows:,}")
    b2.metric("Columns", f"{summary.n_columns:,}")
    b3.metric(
        "Partitions",
        f"{summary.n_partitions:,}",
        help="Pieces the table is read in (files, row groups or blocks); each is read by one "
        "task, so no process holds the whole table.",
    )
    b4.metric("Size on disk", big.source.describe().split(", ")[-1])
    st.info(
        f"{large.sample_note(big)} Roles, the preview and the distributions below use this "
        "sample; row counts, missing values, minimum, maximum, mean and class counts cover "
        "every row.",
        icon=":material/filter_alt:",
    )
    widgets.notes(table.notes)
elif kind == "table" or table.format != "images":
    st.markdown(f"**{table.name}** · {len(frame):,} rows × {frame.shape[1]:,} columns")
    if table.format not in ("sample", "images"):
        widgets.notes(table.notes)
    elif table.format == "images":
        st.caption(
            "This table holds the features of an image set; choose Images above to see the gallery."
        )

join = st.session_state.get(workflow.JOIN_RESULT)
with st.expander("Join a second table on a key (optional)", expanded=join is not None):
    st.caption(
        "For example clinical data (one row per patient) joined to image features. Each key "
        "may appear only once in the second table."
    )
    if big is not None:
        st.caption("Joining is not available for a table on the server: join it before.")
    other_upload = st.file_uploader(
        "Second table",
        type=TABLE_TYPES,
        key="upload_join",
        label_visibility="collapsed",
        disabled=big is not None,
    )
    other = None
    if other_upload is not None:
        try:
            other = cache.uploaded_table(other_upload.getvalue(), other_upload.name)
        except MedimgError as exc:
            st.error(str(exc), icon=":material/error:")
    if other is not None:
        other_columns = [str(c) for c in other.frame.columns]
        left_default = proposal.id if proposal.id in columns else columns[0]
        k1, k2, k3 = st.columns(3)
        left_key = k1.selectbox(
            "Key in the current table",
            columns,
            index=columns.index(left_default),
            key="join_left_key",
        )
        right_key = k2.selectbox(
            f"Key in {other.name}",
            other_columns,
            index=other_columns.index(left_key) if left_key in other_columns else 0,
            key="join_right_key",
        )
        how = k3.radio(
            "Keep",
            ["inner", "left"],
            format_func={
                "inner": "matched rows only",
                "left": "every row of the current table",
            }.get,
            key="join_how",
        )
        if st.button("Join the tables", key="join", icon=":material/join:"):
            try:
                result = join_tables(frame, other.frame, on=(left_key, right_key), how=how)
            except MedimgError as exc:
                st.error(str(exc), icon=":material/error:")
            else:
                workflow.set_table(workflow.joined_table(table, result.frame, other.name))
                st.session_state[workflow.JOIN_RESULT] = {
                    "summary": result.to_dict(),
                    "unmatched_left": [str(k) for k in result.unmatched_left[:1000]],
                    "unmatched_right": [str(k) for k in result.unmatched_right[:1000]],
                    "notes": list(result.notes),
                }
                st.rerun()
    if join is not None:
        summary = join["summary"]
        m1, m2, m3, m4 = st.columns(4)
        m1.metric("Rows in the joined table", f"{summary['rows_out']:,}")
        m2.metric(
            "Matched rows",
            f"{summary['rows_matched']:,} of {summary['rows_left']:,}",
            help="Rows of the first table whose key was found in the second table.",
        )
        m3.metric(
            "Unmatched keys, first table",
            f"{summary['unmatched_left']:,}",
            help="Keys of the first table with no row in the second table.",
        )
        m4.metric(
            "Unmatched keys, second table",
            f"{summary['unmatched_right']:,}",
            help="Keys of the second table with no row in the first table.",
        )
        widgets.notes(join["notes"])
        if join["unmatched_left"] or join["unmatched_right"]:
            with st.popover("Show the unmatched keys", icon=":material/key_off:"):
                u1, u2 = st.columns(2)
                u1.markdown("**First table only**")
                u1.dataframe({"key": join["unmatched_left"]}, height=240, hide_index=True)
                u2.markdown("**Second table only**")
                u2.dataframe({"key": join["unmatched_right"]}, height=240, hide_index=True)

confirmed = state.get(state.ROLES)
start = confirmed or proposal.to_roles()


def _index(options: list[str], value: str | None) -> int | None:
    return options.index(value) if value in options else None


st.subheader("Roles")
roles_col, balance_col = st.columns([3, 2], gap="large")
with roles_col:
    r1, r2 = st.columns(2)
    label = r1.selectbox(
        "Label (diagnosis)",
        columns,
        index=_index(columns, start.label),
        placeholder="Choose the label column",
        key="role_label",
        help="The column the model learns to predict.",
    )
    optional = [NONE, *columns]
    patient = r2.selectbox(
        "Patient ID",
        optional,
        index=_index(optional, start.id) or 0,
        key="role_id",
        help="Rows with the same ID belong to one patient: they are kept together when the "
        "data are split, so no patient is in both training and test.",
    )
    r3, r4 = st.columns(2)
    quality = r3.selectbox(
        "Quality flag",
        optional,
        index=_index(optional, start.quality) or 0,
        key="role_quality",
        help="A column saying whether an image is usable; the Clean page keeps acceptable "
        "values only.",
    )
    site = r4.selectbox(
        "Site",
        optional,
        index=_index(optional, start.site) or 0,
        key="role_site",
        help="Hospital, scanner or batch; never a feature, shown for robustness checks.",
    )
    exclude = st.multiselect(
        "Identifying or excluded columns (never used as features)",
        [c for c in columns if c != label],
        default=[c for c in start.exclude if c in columns and c != label],
        key="role_exclude",
        help="Names, dates of birth, phone numbers, addresses, free text, other identifiers, "
        "and anything else you want to leave out.",
    )
    reasons = [f"{c} ({why})" for c, why in proposal.identifying.items() if c in columns]
    if reasons:
        st.caption("Proposed as identifying: " + ", ".join(reasons) + ".")
    reader_options = [c for c in columns if c not in (label, patient, quality, site, *exclude)]
    reader = st.multiselect(
        "Reader's assessment (e.g. BI-RADS)",
        reader_options,
        default=[c for c in start.reader if c in reader_options],
        key="role_reader",
        help="Features that are themselves a radiologist's or pathologist's judgement. They "
        "stay features, but Train also shows the model's performance without them, so the "
        "reader's skill is not mistaken for the model's.",
    )
    subgroup_options = [c for c in columns if c not in (label, patient, site)]
    subgroups = st.multiselect(
        "Subgroups (metrics per group)",
        subgroup_options,
        default=[c for c in start.subgroups if c in subgroup_options],
        key="role_subgroups",
        help="Columns such as sex or age: Evaluate shows the metrics with 95% intervals for "
        "each group (ages in bands). A subgroup stays a feature unless you also exclude it; "
        "the site is always analysed by site.",
    )

    classes = workflow.label_classes(frame, label)
    positive = None
    choice = None
    if label is not None and len(classes) >= 2:
        choice = class_inputs(
            frame,
            label,
            classes,
            confirmed=confirmed,
            confirmed_positive=state.get(state.POSITIVE),
            known=known_dataset(table.content_hash),
        )
        positive = choice.positive
    if label is not None and len(classes) > 2:
        st.caption(f"The label has {len(classes)} classes: a multi-class model will be trained.")
    elif label is not None and len(classes) < 2:
        st.warning(
            f"The label '{label}' has {len(classes)} class(es); a diagnostic model needs at "
            "least two. Choose another label column.",
            icon=":material/warning:",
        )

    pending = None
    try:
        pending = workflow.build_roles(
            label=label,
            id=None if patient == NONE else patient,
            quality=None if quality == NONE else quality,
            site=None if site == NONE else site,
            exclude=exclude,
            reader=reader,
            subgroups=subgroups,
        )
    except MedimgError as exc:
        st.error(str(exc), icon=":material/error:")
    if pending is not None and choice is not None:
        pending = with_classes(pending, choice, id_like_inputs(frame, pending))
    if st.button(
        "Confirm roles",
        key="confirm_roles",
        type="primary",
        disabled=pending is None
        or len(classes) < 2
        or (choice is not None and choice.needs_positive),
        icon=":material/check:",
    ):
        workflow.confirm_roles(pending, positive)
        confirmed = pending
    if confirmed is not None and confirmed == pending and state.get(state.POSITIVE) == positive:
        st.success("Roles confirmed.", icon=":material/check_circle:")
    elif confirmed is not None:
        st.warning(
            "You changed the roles: press Confirm roles to apply the change.",
            icon=":material/edit:",
        )
    else:
        st.info("Check the proposed roles, then press Confirm roles.", icon=":material/info:")

with balance_col:
    if label is not None and classes:
        if big is None:
            st.plotly_chart(class_balance_figure(frame[label]), key="class_balance")
        else:
            try:
                counts = large.label_counts(big, label)
            except MedimgError as exc:
                st.error(str(exc), icon=":material/error:")
            else:
                st.plotly_chart(
                    class_balance_figure(large.label_series(counts)), key="class_balance"
                )
                st.caption(f"Every one of the {big.n_rows:,} rows counted.")

shown_roles = pending or confirmed or start
hidden = hidden_columns(shown_roles)
profile_tab, preview_tab = st.tabs(["Column profile", "Data preview"])
with profile_tab:
    profile = cache.column_profile(table.content_hash, frame, cache.as_json(shown_roles))
    if big is not None:
        profile = large.profile(big, profile, hidden)
        st.caption(
            "Missing, minimum, maximum and mean: every row. Type, unique values, summary and "
            f"distribution: the sample. {large.sample_note(big)}"
        )
    st.dataframe(
        profile,
        hide_index=True,
        height=min(560, 38 + 35 * len(profile)),
        key="profile",
        column_config={
            "column": st.column_config.TextColumn("Column", width=130, pinned=True),
            "role": st.column_config.TextColumn("Role", width=80),
            "type": st.column_config.TextColumn("Type", width=80),
            "missing %": st.column_config.NumberColumn(
                "Missing", format="%.1f%%", width=60, help="Share of rows with no value."
            ),
            "unique": st.column_config.NumberColumn(
                "Unique", format="%d", width=60, help="Distinct values, missing aside."
            ),
            "distribution": st.column_config.BarChartColumn(
                "Distribution",
                y_min=0,
                width=80,
                help="Histogram for numbers, most frequent values otherwise.",
            ),
            # Narrow columns elsewhere leave the summary room for "median 0.0926 (IQR
            # 0.0649–0.13); range 0.0194–0.345" in a wide layout beside the sidebar.
            "summary": st.column_config.TextColumn("Summary", width=330),
            "missing": st.column_config.NumberColumn("Missing rows", format="%d", width=80),
            "min": st.column_config.NumberColumn("Min", format="%.4g", width=70),
            "max": st.column_config.NumberColumn("Max", format="%.4g", width=70),
            "mean": st.column_config.NumberColumn("Mean", format="%.4g", width=70),
        },
        column_order=["column", "role", "type", "missing %", "unique", "distribution", "summary"]
        if big is None
        else [
            "column",
            "role",
            "type",
            "missing",
            "missing %",
            "min",
            "max",
            "mean",
            "unique",
            "distribution",
            "summary",
        ],
    )
with preview_tab:
    show = st.checkbox(
        "Show identifying columns",
        key="show_identifying",
        help="The patient ID and the excluded columns are hidden unless you ask.",
    )
    if hidden and not show:
        described = ", ".join(f"{c} ({column_role(c, shown_roles)})" for c in hidden)
        st.caption(f"Hidden: {described}.")
    if big is not None:
        st.caption(large.sample_note(big))
    widgets.paged_dataframe(widgets.without_columns(frame, hidden, show=show), key="preview")

if state.has(state.ROLES):
    workflow.next_step("data")
