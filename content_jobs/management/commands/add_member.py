from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from content_jobs.models import Company, Membership


class Command(BaseCommand):
    help = "Make a user a member of a company (or change the role of one who is)."

    def add_arguments(self, parser):
        parser.add_argument("company_slug")
        parser.add_argument("username")
        parser.add_argument("--role", choices=[r.value for r in Membership.Role], default=Membership.Role.MEMBER)
        parser.add_argument("--create-user", action="store_true", help="Create the user if it does not exist.")

    def handle(self, *args, company_slug, username, role, create_user, **options):
        try:
            company = Company.objects.get(slug=company_slug)
        except Company.DoesNotExist:
            raise CommandError(f"No company with slug {company_slug!r}.") from None
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            if not create_user:
                raise CommandError(f"No user {username!r}; pass --create-user to create one.")
            try:  # the admin's and Django's own checks of a username
                User._meta.get_field(User.USERNAME_FIELD).clean(username, None)
            except ValidationError as exc:
                raise CommandError(f"{username!r} is not a valid username: {' '.join(exc.messages)}") from None
            user = User.objects.create_user(username=username)
        membership, created = Membership.objects.update_or_create(
            user=user, company=company, defaults={"role": role}
        )
        verb = "added to" if created else "is in"
        self.stdout.write(f"{user.username} {verb} {company.slug} as {membership.role}")
