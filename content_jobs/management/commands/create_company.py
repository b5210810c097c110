from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils.text import slugify

from content_jobs.models import Company


class Command(BaseCommand):
    help = "Create a company (tenant) and print its id; for an existing slug, print that company's id."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", default=None)

    def handle(self, *args, slug, name, **options):
        if not slug or len(slug) > Company._meta.get_field("slug").max_length or slugify(slug) != slug:
            raise CommandError(f"{slug!r} is not a valid slug (lowercase letters, digits, - and _)")
        if name is not None:
            try:
                Company._meta.get_field("name").clean(name, None)
            except ValidationError as exc:
                raise CommandError(f"{name!r} is not a valid name: {' '.join(exc.messages)}") from None
        company, _ = Company.objects.get_or_create(slug=slug, defaults={"name": name or slug})
        self.stdout.write(str(company.id))
