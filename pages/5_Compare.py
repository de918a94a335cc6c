"""Compare page (being built)."""

import streamlit as st

from ui import state

state.init("Compare")
st.title("Compare")
st.info("This page is being built.")
state.sync_url()
