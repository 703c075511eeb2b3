"""The API tokens page: make a token (its secret shown once) and revoke tokens."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from ..models import ApiToken

TOKEN_LIMIT = 50


class TokenForm(forms.Form):
    name = forms.CharField(
        max_length=64, help_text="What the token is for, e.g. 'nightly scoring job'."
    )

    def __init__(self, *args: object, user: object) -> None:
        super().__init__(*args)
        self.user = user

    def clean(self) -> dict[str, object]:
        if ApiToken.objects.filter(user=self.user).count() >= TOKEN_LIMIT:
            raise forms.ValidationError(
                f"you have {TOKEN_LIMIT} tokens, the most allowed; revoke one first"
            )
        return super().clean()


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def token_list(request: HttpRequest) -> HttpResponse:
    """A POST makes a token and renders its secret into this response only.

    No redirect: the secret would have to be stored (session, messages) to
    survive one, and it is never stored anywhere.
    """
    posted = request.POST if request.method == "POST" else None
    form = TokenForm(posted, user=request.user)
    secret = ""
    if form.is_bound and form.is_valid():
        _, secret = ApiToken.objects.issue(request.user, form.cleaned_data["name"])
        form = TokenForm(user=request.user)
    tokens = ApiToken.objects.filter(user=request.user)
    context = {"form": form, "tokens": tokens, "secret": secret}
    return render(request, "studio/tokens/list.html", context)


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    deleted, _ = ApiToken.objects.filter(pk=token_id, user=request.user).delete()
    if not deleted:
        raise Http404("token not found")
    messages.success(request, "Token revoked; requests using it now get 401.")
    return redirect("studio:token-list")


urlpatterns = [
    path("settings/tokens/", token_list, name="token-list"),
    path("settings/tokens/<int:token_id>/revoke/", token_revoke, name="token-revoke"),
]
