"""``demo_setup``: prepare the demo database; safe to run again and again."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the demo's admin user (admin/admin) and its schedules, if missing."

    def handle(self, *args, **options) -> None:
        self.create_admin()
        self.create_schedules()

    def create_admin(self) -> None:
        User = get_user_model()
        if User.objects.filter(username="admin").exists():
            self.stdout.write("Superuser 'admin' already exists.")
            return
        User.objects.create_superuser("admin", "admin@example.com", "admin")
        self.stdout.write(self.style.SUCCESS("Created superuser admin / admin."))

    def create_schedules(self) -> None:
        # Demo schedules are declared in code, in demo/schedules.py, which taskmill's
        # scheduler discovers like tasks.py; syncing writes them to the database. A taskmill
        # without the scheduler has nothing to sync.
        import taskmill

        if not hasattr(taskmill, "schedule"):
            self.stdout.write("This taskmill has no scheduler: no demo schedules to set up.")
            return
        from django.core.management import call_command

        call_command("taskmill", "sync-schedules", stdout=self.stdout, stderr=self.stderr)
