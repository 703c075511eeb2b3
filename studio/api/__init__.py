"""The REST API: DRF viewsets over the studio's services, token auth, OpenAPI schema."""
