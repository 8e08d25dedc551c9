"""Routes of the deployments API (included under /api/v1/)."""

from rest_framework.routers import SimpleRouter

from deployments.api import views

router = SimpleRouter()
router.register("services", views.ServiceViewSet, basename="service")
router.register("environments", views.EnvironmentViewSet, basename="environment")
router.register("instances", views.InstanceViewSet, basename="instance")
router.register("releases", views.ReleaseViewSet, basename="release")
router.register("deployments", views.DeploymentViewSet, basename="deployment")

urlpatterns = router.urls
