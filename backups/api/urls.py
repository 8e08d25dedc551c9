from rest_framework.routers import SimpleRouter

from backups.api.views import BackupPolicyViewSet, BackupViewSet, RestoreViewSet, VerificationViewSet

router = SimpleRouter()
router.register("backup-policies", BackupPolicyViewSet, basename="backup-policy")
router.register("backups", BackupViewSet, basename="backup")
router.register("backup-verifications", VerificationViewSet, basename="backup-verification")
router.register("restores", RestoreViewSet, basename="restore")

urlpatterns = router.urls
