"""The leaderboard's web app (FastAPI + Jinja2): `medboard.web.app.create_app`."""
