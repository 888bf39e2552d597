from orders.app import create_app
from shopkit.serve import serve

serve(create_app, name="orders", default_port=8003)
