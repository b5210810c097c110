"""The stock DRF baseline's one model: a row that a POST creates (bench/baselines/stock_urls.py)."""
from django.db import models


class Note(models.Model):
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
