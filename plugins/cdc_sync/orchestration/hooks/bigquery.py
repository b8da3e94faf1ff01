"""BigQueryHook that honours an `api_endpoint` in the connection's extras.

Lets the same `google_cloud_default` connection point at BigQuery or at a local emulator
(with `is_anonymous: true`), without settings of our own.
"""

from __future__ import annotations

from airflow.providers.google.cloud.hooks.bigquery import BigQueryHook
from google.api_core.client_options import ClientOptions


class CdcBigQueryHook(BigQueryHook):
    def get_client_options(self, api_endpoint_override: str | None = None) -> ClientOptions:
        endpoint = api_endpoint_override or self._get_field("api_endpoint", None)
        return super().get_client_options(api_endpoint_override=endpoint)
