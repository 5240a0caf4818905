//! HTML report checks (rendered in headless Chromium where available).
