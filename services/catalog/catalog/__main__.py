from shopkit.serve import serve

from catalog.app import create_app

serve(create_app, name="catalog", default_port=8002)
