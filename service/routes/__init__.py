"""HTTP routers, one per resource."""

from service.routes.health import router as health_router
from service.routes.metrics import router as metrics_router
from service.routes.models import router as models_router
from service.routes.page import router as page_router
from service.routes.predict import router as predict_router

__all__ = ["health_router", "metrics_router", "models_router", "page_router", "predict_router"]
