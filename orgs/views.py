from django.shortcuts import redirect


def index(request):
    return redirect("/orgs/" if request.user.is_authenticated else "/login/")
