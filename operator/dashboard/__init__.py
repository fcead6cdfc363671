"""The read-only web dashboard: a JSON API over `kubetune.client` and one static page that draws
it with Plotly's JS bundle (served from the installed `plotly` package, no CDN, no build step)."""
