"""The offline HTML report: a builder (`builder.py`) and the page's own files, `page.html`,
`report.css` and `report.js`, shipped as package data and inlined into one self-contained page."""
