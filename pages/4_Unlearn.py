"""Unlearn page (being built)."""

import streamlit as st

from ui import state

state.init("Unlearn")
st.title("Unlearn")
st.info("This page is being built.")
state.sync_url()
