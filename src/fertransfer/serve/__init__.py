"""`pipeline serve`: a web page that classifies the faces in camera frames and photos, and its JSON API."""
