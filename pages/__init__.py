"""Streamlit pages (one thin file per step). A package only so that import-linter can check them."""
