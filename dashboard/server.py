"""What `oddsflow dashboard` serves: the Streamlit app (app.py) plus the routes that set and
clear the login cookie (dashboard/sessions.py). `streamlit run` finds `app` and serves it."""

from pathlib import Path

import streamlit as st

from dashboard import sessions

app = st.App(Path(__file__).with_name("app.py"), routes=sessions.routes())
