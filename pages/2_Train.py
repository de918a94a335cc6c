"""Train page (being built)."""

import streamlit as st

from ui import state

state.init("Train")
st.title("Train")
st.info("This page is being built.")
state.sync_url()
