"""Forget set page (being built)."""

import streamlit as st

from ui import state

state.init("Forget set")
st.title("Forget set")
st.info("This page is being built.")
state.sync_url()
