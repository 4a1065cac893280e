"""Login forms that say when an account or address is locked out instead of "wrong password"."""

from __future__ import annotations

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm

from annotator.accounts.lockout import is_locked, lockout_message


class LockoutMixin:
    def clean(self):
        if is_locked(self.cleaned_data.get("username"), self.request):
            raise forms.ValidationError(lockout_message(), code="locked_out")
        return super().clean()


class LoginForm(LockoutMixin, AuthenticationForm):
    pass


class AdminLoginForm(LockoutMixin, AdminAuthenticationForm):
    pass
