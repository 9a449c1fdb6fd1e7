# GitLab CI/CD as an IAM OIDC identity provider, and one role that jobs of the given
# projects on the given refs can assume with their ID token (AWS_ROLE_ARN).
terraform {
  required_version = ">= 1.3"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.81" # thumbprint_list is optional from 5.81
    }
  }
}

resource "aws_iam_openid_connect_provider" "gitlab" {
  count = var.existing_provider_arn == null ? 1 : 0

  url            = var.gitlab_url
  client_id_list = [local.audience]
}

locals {
  oidc_provider_arn = var.existing_provider_arn != null ? var.existing_provider_arn : aws_iam_openid_connect_provider.gitlab[0].arn
}

resource "aws_iam_role" "this" {
  name                 = var.role_name
  description          = "Assumed by GitLab CI/CD jobs of ${join(", ", var.project_paths)} (${var.ref_type} ${var.ref})"
  assume_role_policy   = jsonencode(local.trust_policy)
  max_session_duration = var.max_session_duration
}

resource "aws_iam_role_policy_attachment" "this" {
  for_each = toset(var.managed_policy_arns)

  role       = aws_iam_role.this.name
  policy_arn = each.value
}
