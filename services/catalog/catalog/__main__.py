from catalog.app import create_app
from shopkit.serve import serve

serve(create_app, name="catalog", default_port=8002)
