from shopkit.serve import serve

from orders.app import create_app

serve(create_app, name="orders", default_port=8003)
